"""Training targets in the model's own text style.

Whisper writes cased, punctuated sentences. Prompts and corpora often come in UPPERCASE
without punctuation; teaching the model that style would cost it elsewhere, so such text is
turned into sentence case first (WER is scored after normalization either way).
"""

from __future__ import annotations

import re

_TERMINAL = (".", "!", "?", "\u2026", '"', "'", ")")


def to_whisper_style(text: str) -> str:
    """``"WE CALL IT BEAR"`` -> ``"We call it bear."``; cased text is left as it is."""
    text = " ".join(text.split())
    if not text:
        return text
    if not any(c.islower() for c in text) and any(c.isupper() for c in text):
        text = text.lower()
        text = re.sub(r"\bi\b", "I", text)
        text = re.sub(r"\bi'(m|ll|ve|d)\b", lambda m: "I'" + m.group(1), text)
        text = text[0].upper() + text[1:]
        if not text.endswith(_TERMINAL):
            text += "."
    return text
