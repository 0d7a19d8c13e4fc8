"""``asr-adapt``: entry point. Each sub-command lives in its own module and only forwards
parsed flags to the library; errors meant for the user end as one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from asr_adapt import __version__
from asr_adapt.core.errors import AsrAdaptError

#: Sub-command modules, in the order ``--help`` lists them. Each defines
#: ``register(subparsers)`` and a ``run(args) -> int`` set as the parser's default.
COMMANDS = ("demo_cmd", "enroll_cmd", "adapt_cmd", "transcribe", "live_cmd", "eval_cmd", "compare_cmd", "profiles_cmd",
            "manifest_cmd", "models_cmd", "serve_cmd")


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad flag or value reported as every other user error is: one line, exit 2
    (argparse's own usage block names every flag of the command; ``--help`` still shows it).
    Sub-command parsers are of the same class."""

    def error(self, message: str):
        command = self.prog.removeprefix("asr-adapt").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"asr-adapt: error: {where}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="asr-adapt",
        description="Personalized speech recognition: adapt Whisper to one voice with LoRA.",
    )
    parser.add_argument("--version", action="version", version=f"asr-adapt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"asr_adapt.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _quiet_libraries(args.verbose)
    try:
        return int(args.run(args) or 0)
    except AsrAdaptError as error:
        print(f"asr-adapt: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("asr-adapt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error for the user.
        return 0
    except OSError as error:  # the last net: a file problem no command foresaw is still one line
        where = f"{error.filename}: " if error.filename else ""
        print(f"asr-adapt: error: {where}{error.strerror or error}; check the path, its permissions and "
              "free space", file=sys.stderr)
        return 2
    except MemoryError:
        print("asr-adapt: error: out of memory; use shorter audio, a smaller --batch-size or a smaller model",
              file=sys.stderr)
        return 2


def _quiet_libraries(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # transformers reads this when first imported, which the commands do lazily.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        import warnings

        warnings.filterwarnings("ignore", module="transformers")
        warnings.filterwarnings("ignore", category=FutureWarning)
        # torch's complaint about WavLM's attention masks: nothing a user can act on.
        warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
