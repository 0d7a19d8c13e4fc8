"""Enrollment in a terminal: the :class:`~asr_adapt.profiles.enrollment.EnrollmentUI` that
``asr-adapt enroll`` passes to :func:`~asr_adapt.profiles.enrollment.enroll_from_microphone`.

Single keys answer the questions (:class:`~asr_adapt.ui.terminal_keys.TerminalKeys`), output
goes to stderr, and the level meter is one line redrawn in place (with :mod:`rich` when
installed). :func:`terminal_ui` refuses to start without a terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from asr_adapt.audio.capture import LevelUpdate
from asr_adapt.audio.takes import level_meter
from asr_adapt.profiles.enrollment import EnrollmentUI
from asr_adapt.profiles.prompts import EnrollmentError
from asr_adapt.ui.terminal_keys import TerminalKeys

NO_TERMINAL_MESSAGE = ("interactive enrollment needs a terminal; use --from DIR to enroll from "
                       "recordings")
#: The meter is redrawn at most this often (seconds): blocks come every 50 ms.
REDRAW_SECONDS = 0.06


def terminal_ui() -> TerminalUI:
    """A :class:`TerminalUI` on stdin and stderr; :class:`EnrollmentError` without a terminal."""
    if not _stdin_is_terminal():
        raise EnrollmentError(NO_TERMINAL_MESSAGE)
    return TerminalUI()


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_console(stream: Any) -> Any:
    """A :mod:`rich` console writing to ``stream``, or ``None`` when rich is not installed."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, highlight=False)


def meter_line(update: LevelUpdate) -> str:
    """The one-line meter of a take: time, level, whether speech was heard."""
    state = "speech" if update.speech_heard else "listening"
    return (f"REC {update.seconds:4.1f}/{update.max_seconds:g} s  {level_meter(update.block)}"
            f"  {state}  (Enter: stop)")


class TerminalUI(EnrollmentUI):
    """Single keys from the terminal (cbreak mode while open), output on ``stream`` (stderr).

    The level meter is one line, redrawn in place (with :mod:`rich` when installed).
    """

    def __init__(self, stdin: Any = None, stream: Any = None) -> None:
        self._keys = TerminalKeys(stdin)
        self._out = stream if stream is not None else sys.stderr
        self._console = _rich_console(self._out)
        self._live: Any = None         # rich's Live meter during a take
        self._line_width = 0           # the plain meter's width, to clear it
        self._last_draw = 0.0

    def __enter__(self) -> TerminalUI:
        self._keys.open()
        return self

    def close(self) -> None:
        self.end_take()
        self._keys.close()

    # ----------------------------------------------------------------- output

    def _print(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style=style or ""))
        else:
            print(text, file=self._out, flush=True)

    def message(self, text: str) -> None:
        self._print(text)

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        self._print("")
        self._print(f"prompt {number} - {recorded_seconds / 60:.1f} of "
                    f"{suggested_seconds / 60:.1f} min recorded", style="dim")
        self._print(f"  {prompt}", style="bold")

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        hints = "  ".join(f"[{'Enter' if key == default else key}] {label}"
                          for key, label in keys.items())
        self._print(f"{question}  {hints}", style="cyan")
        self._keys.flush()
        while True:
            key = self._keys.getkey()
            if key in ("\n", "\r"):
                return default
            if key in ("", "\x04"):  # end of input, Ctrl-D
                return "q" if "q" in keys else default
            if key.lower() in keys:
                return key.lower()

    # ----------------------------------------------------------------- takes

    def start_take(self) -> threading.Event:
        stop = self._keys.watch_for_enter()
        if self._console is not None:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text(""), console=self._console, refresh_per_second=15,
                              transient=True)
            self._live.start()
        return stop

    def level(self, update: LevelUpdate) -> None:
        now = time.monotonic()
        if now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        line = meter_line(update)
        if self._live is not None:
            from rich.text import Text

            style = "red" if "CLIP" in line else ("green" if update.speech_heard else "yellow")
            self._live.update(Text(line, style=style))
        else:
            self._out.write("\r" + line.ljust(self._line_width))
            self._out.flush()
            self._line_width = len(line)

    def end_take(self) -> None:
        self._keys.stop_watching()
        live, self._live = self._live, None
        if live is not None:
            live.stop()
        elif self._line_width:
            self._out.write("\r" + " " * self._line_width + "\r")
            self._out.flush()
            self._line_width = 0


__all__ = ["NO_TERMINAL_MESSAGE", "TerminalUI", "meter_line", "terminal_ui"]
