"""Six scored utterances of two speakers, before and after: the fixtures of the report tests."""

from __future__ import annotations

from asr_adapt.data.scoring import score

CASES = {
    "u1": ("alice", "the cat sat on the mat", "the cat sat on a hat", "the cat sat on the mat"),  # 2 -> 0
    "u2": ("alice", "hello world", "hello word", "hello world"),                                # 1 -> 0
    "u3": ("bob", "a small step", "a small step", "a tall step here"),                         # 0 -> 2
    "u4": ("bob", "good morning everyone", "good evening", "good morning"),                    # 2 -> 1
    "u5": ("bob", "see you later", "see you later", "see later"),                              # 0 -> 1
    "u6": ("carol", "thank you", "thank you", "thank you"),                                    # 0 -> 0
}
WORDS = 19  # reference words in CASES


def make_report(which: int, ids=None, meta=None):
    ids = list(ids or CASES)
    return score([CASES[i][1] for i in ids], [CASES[i][which] for i in ids], ids=ids,
                 speakers=[CASES[i][0] for i in ids], meta=meta)
