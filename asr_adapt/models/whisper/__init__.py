"""Whisper: everything specific to the seq2seq family (loading, decoding, training batches, CTranslate2 import)."""
