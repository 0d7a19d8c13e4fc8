"""LocalAgreement: commit the words that successive hypotheses of one buffer agree on.

Whisper transcribes whole windows, not streams. Following ufal/whisper_streaming, a growing
buffer of recent audio is transcribed again at every step, and only the words that the last
``n`` hypotheses agree on are *committed* (LocalAgreement-2): a word that survived one more
second of right context rarely changes again. Words are compared by
:func:`~asr_adapt.models.repetition.normalize_word`, so casing and punctuation do not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.repetition import normalize_word


def common_prefix(*hypotheses: Sequence[str]) -> int:
    """How many leading words all ``hypotheses`` share (compared by :func:`normalize_word`)."""
    if not hypotheses:
        return 0
    count = 0
    for words in zip(*hypotheses):
        if len({normalize_word(w) for w in words}) != 1:
            break
        count += 1
    return count


#: How far apart (in words) a committed word and its match in a new hypothesis may be.
ALIGN_SLACK = 2


def align_prefix(committed: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, int]:
    """Where ``committed`` ends in ``hypothesis``: ``(i, j)`` such that the first ``i``
    committed words correspond to the first ``j`` hypothesis words, and either all committed
    words (``i == len(committed)``) or all hypothesis words (``j == len(hypothesis)``) are used.

    A new hypothesis of the same buffer usually repeats the committed words exactly; when
    Whisper rewrites one of them (casing, a split word), the best fuzzy alignment decides.
    Matches more than :data:`ALIGN_SLACK` words apart are not trusted: the same audio gives
    about as many words each time, and a committed guess that was wrong ("I'll leave the
    alone" for "Are they alone to knit during the long") would otherwise align its "the"
    with a later "the" and swallow the words between.
    """
    c = [normalize_word(w) for w in committed]
    h = [normalize_word(w) for w in hypothesis]
    if h[:len(c)] == c:
        return len(c), len(c)
    if c[:len(h)] == h:
        return len(h), len(h)
    end_c = end_h = 0
    for a, b, size in SequenceMatcher(None, c, h, autojunk=False).get_matching_blocks():
        if size and abs(a - b) <= ALIGN_SLACK:
            end_c, end_h = a + size, b + size
    extra = min(len(c) - end_c, len(h) - end_h)  # unmatched words on both sides pair up
    return end_c + extra, end_h + extra


class LocalAgreement:
    """LocalAgreement-n over word hypotheses of one growing buffer.

    :meth:`update` takes the buffer's newest hypothesis and returns the words it commits:
    the longest prefix (after the words already committed) that the last ``n`` hypotheses
    agree on. :meth:`flush` commits the latest tentative words as they are (end of a phrase
    or of the stream). Committed words are in the newest hypothesis' spelling.
    """

    def __init__(self, n: int = 2) -> None:
        if n < 1:
            raise OptionsError("agreement needs at least one hypothesis")
        self.n = n
        self.committed: list[str] = []
        self._history: list[list[str]] = []

    @property
    def tentative(self) -> list[str]:
        """The newest hypothesis' words after the committed ones."""
        return list(self._history[-1]) if self._history else []

    def update(self, hypothesis: Sequence[str]) -> list[str]:
        """Add a hypothesis of the whole buffer; return the words newly committed."""
        _, start = align_prefix(self.committed, hypothesis)
        self._history.append(list(hypothesis[start:]))
        self._history = self._history[-self.n:]
        if len(self._history) < self.n:
            return []
        agreed = common_prefix(*self._history)
        new = self._history[-1][:agreed]
        self.committed.extend(new)
        self._history = [words[agreed:] for words in self._history]
        return new

    def flush(self) -> list[str]:
        """Commit the newest tentative words without waiting for agreement."""
        new = self.tentative
        self.committed.extend(new)
        self._history = []
        return new

    def reset(self, committed: Sequence[str] = ()) -> None:
        """Start over on a new buffer whose audio holds ``committed`` (already committed)."""
        self.committed = list(committed)
        self._history = []
