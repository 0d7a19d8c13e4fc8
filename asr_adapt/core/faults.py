"""Fault injection for the reliability suite: kill this process at a named point.

``ASR_ADAPT_KILL_AT=POINT[:N]`` makes the process send itself SIGKILL the N-th time (default
the first) it reaches :func:`reached` ``(POINT)``, so that a test can check what a power cut
or ``kill -9`` at that exact moment leaves behind. Unset (always, outside tests), a call is
one dictionary lookup. The points are named where they are reached (``adapt-step``,
``adapter-written``, ``adapter-renamed``, ``enroll-take``, ``import-extracted``).
"""

from __future__ import annotations

import os
import signal

ENV = "ASR_ADAPT_KILL_AT"
_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Die here, by SIGKILL, if ``ASR_ADAPT_KILL_AT`` names this point and its count is up."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= int(count or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
