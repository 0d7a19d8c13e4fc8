"""Single key presses from a terminal, for interactive commands.

:class:`TerminalKeys` puts the terminal in cbreak mode while open (POSIX: a key counts
without Enter and is not echoed), reads one key at a time (``msvcrt`` on Windows, whole
lines when neither works), and can watch for Enter on a thread while something else runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

#: Keys that stop a take early when pressed during it.
STOP_KEYS = (b"\n", b"\r", b" ")


class TerminalKeys:
    """Keys from ``stdin`` (default: :data:`sys.stdin`); use :meth:`open` / :meth:`close`."""

    def __init__(self, stdin: Any = None) -> None:
        self._in = stdin if stdin is not None else sys.stdin
        self._fd = self._in.fileno()
        self._saved: Any = None        # the terminal's settings before cbreak mode
        self._listener: threading.Thread | None = None
        self._done = threading.Event()

    def open(self) -> None:
        """Enter cbreak mode (a no-op where it is not available)."""
        try:
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        except Exception:  # not POSIX, not a real terminal, or termios.error
            self._saved = None

    def close(self) -> None:
        """Stop watching and give the terminal its settings back."""
        self.stop_watching()
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except Exception:
                pass
            self._saved = None

    def flush(self) -> None:
        """Drop keys typed ahead (a key pressed before a question is not its answer)."""
        if self._saved is not None:
            import termios

            try:
                termios.tcflush(self._fd, termios.TCIFLUSH)
            except Exception:
                pass

    def getkey(self) -> str:
        """The next key; ``""`` at the end of input."""
        if self._saved is not None:
            data = os.read(self._fd, 1)
            return data.decode("utf-8", errors="ignore") if data else ""
        try:
            import msvcrt  # type: ignore[import-not-found]

            return msvcrt.getwch()
        except ImportError:
            line = self._in.readline()
            return line.strip()[:1] or ("\n" if line else "")

    def watch_for_enter(self) -> threading.Event:
        """An event set when Enter (or space) is pressed, until :meth:`stop_watching`."""
        stop = threading.Event()
        self._done.clear()
        self.flush()
        self._listener = threading.Thread(target=self._listen, args=(stop,), daemon=True,
                                          name="asr-adapt-enter-key")
        self._listener.start()
        return stop

    def stop_watching(self) -> None:
        """End the watch :meth:`watch_for_enter` started (idempotent)."""
        self._done.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(timeout=1.0)

    def _listen(self, stop: threading.Event) -> None:
        """Set ``stop`` when Enter (or space) is pressed, until the watch ends."""
        try:
            if self._saved is not None:
                import select

                while not self._done.is_set():
                    ready, _, _ = select.select([self._fd], [], [], 0.05)
                    if ready and os.read(self._fd, 1) in STOP_KEYS:
                        stop.set()
                        return
                return
            import msvcrt  # type: ignore[import-not-found]

            while not self._done.is_set():
                if msvcrt.kbhit() and msvcrt.getwch() in ("\r", "\n", " "):
                    stop.set()
                    return
                time.sleep(0.05)
        except Exception:  # no way to read keys: end-of-speech detection still stops takes
            return


__all__ = ["STOP_KEYS", "TerminalKeys"]
