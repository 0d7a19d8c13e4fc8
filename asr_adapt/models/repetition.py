"""Text checks every decoder shares: repetition loops, phrases said twice, word normalization."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence


#: Upper bound on speech rate used to cap decoding length (tokens per second of audio).
MAX_TOKENS_PER_SECOND = 10


#: Whisper's threshold: text whose gzip compression ratio exceeds this is a repetition loop.
COMPRESSION_RATIO_THRESHOLD = 2.4


def token_budget(max_new_tokens: int, seconds: float) -> int:
    """Tokens a decoder may write for ``seconds`` of audio: ``max_new_tokens``, or fewer, since
    nobody says more than :data:`MAX_TOKENS_PER_SECOND` (plus 16 for the start): a decoder stuck
    in a loop stops there rather than at Whisper's 448-token limit."""
    return min(max_new_tokens, int(MAX_TOKENS_PER_SECOND * seconds) + 16)


def compression_ratio(text: str) -> float:
    """Bytes of text per byte of its zlib compression (high for repetitive text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_runaway(text: str) -> bool:
    """True for a hypothesis that is a repetition loop rather than speech."""
    return len(text) > 40 and compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD


_PUNCTUATION = re.compile(r"[^\w']+")


def normalize_word(word: str) -> str:
    """The form two hypotheses are compared in: case and punctuation do not count."""
    return _PUNCTUATION.sub("", word.casefold())


def says_twice(words: Sequence[str], shortest: int = 4) -> bool:
    """Whether ``words`` hold a span of at least ``shortest`` words said twice in a row
    (compared as normalized words: "park." and "park" are the same)."""
    norm = [normalize_word(w) for w in words]
    n = len(norm)
    for length in range(shortest, n // 2 + 1):
        for start in range(0, n - 2 * length + 1):
            if norm[start:start + length] == norm[start + length:start + 2 * length]:
                return True
    return False
