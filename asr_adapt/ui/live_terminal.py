"""The terminal side of ``asr-adapt live``: showing the transcript as it grows, and reading
the profile names typed while it runs.

:func:`make_display` picks :class:`RichDisplay` on a terminal (finished phrases scroll up;
the open phrase and its tentative tail are redrawn in place) and :class:`LineDisplay` for a
pipe or a file. Both are the :class:`~asr_adapt.decode.live.LiveDisplay` that the command
passes to :class:`~asr_adapt.decode.live.LiveSession`; :func:`start_command_reader` fills
the queue of typed commands the session reads.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import TextIO

from asr_adapt.decode.streaming import StreamUpdate


class LineDisplay:
    """For a pipe or file: committed words only, as they come; a line per phrase."""

    def __init__(self, stream: TextIO | None = None, notes: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.notes = notes or sys.stderr
        self._open = False

    def update(self, update: StreamUpdate) -> None:
        if update.committed:
            self.stream.write(("" if not self._open else " ") + " ".join(update.committed))
            self._open = True
        if update.phrase_ended and self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.flush()

    def note(self, text: str) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
        print(text, file=self.notes, flush=True)

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.flush()


class RichDisplay:
    """For a terminal: finished phrases scroll up; the open phrase and the tentative tail
    (dimmed) are redrawn in place as they change."""

    def __init__(self, console=None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self._words: list[str] = []
        self._tentative = ""
        self._live = Live(self._render(), console=self.console, auto_refresh=False, transient=True)
        self._live.start()

    def _render(self):
        from rich.text import Text

        text = Text(" ".join(self._words))
        if self._tentative:
            text.append((" " if self._words else "") + self._tentative, style="dim italic")
        return text

    def update(self, update: StreamUpdate) -> None:
        self._words.extend(update.committed)
        self._tentative = update.tentative
        if update.phrase_ended and self._words:
            self._live.console.print(" ".join(self._words))
            self._words = []
        self._live.update(self._render(), refresh=True)

    def note(self, text: str) -> None:
        self._live.console.print(text, style="cyan", markup=False)
        self._live.refresh()

    def close(self) -> None:
        self._tentative = ""
        if self._words:
            self._live.console.print(" ".join(self._words))
            self._words = []
        self._live.update(self._render(), refresh=True)
        self._live.stop()


def make_display(stream: TextIO | None = None):
    """A :class:`RichDisplay` on a terminal, a :class:`LineDisplay` otherwise."""
    stream = stream or sys.stdout
    if stream.isatty():
        return RichDisplay()
    return LineDisplay(stream)


def start_command_reader(stream: TextIO | None = None) -> queue.Queue:
    """Read lines typed during the session (a profile name, or ``base``) on a daemon thread."""
    commands: queue.Queue = queue.Queue()
    stream = stream or sys.stdin

    def read() -> None:
        try:
            for line in stream:
                if line.strip():
                    commands.put(line.strip())
        except (OSError, ValueError):
            pass

    threading.Thread(target=read, name="live-commands", daemon=True).start()
    return commands


__all__ = ["LineDisplay", "RichDisplay", "make_display", "start_command_reader"]
