"""Running the CLI in-process in tests, and checking its one-line errors."""

from __future__ import annotations

from asr_adapt.cli.main import main


FAST = ("--max-new-tokens", "4")


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop what building fixtures printed
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    import re

    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("asr-adapt: error:")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
