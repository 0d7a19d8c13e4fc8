"""Whisper's fixed numbers, defined once: its window, frame rates, decoder length."""

from __future__ import annotations

#: Whisper's encoder window: 30 s of audio as 3000 log-mel feature frames.
FULL_WINDOW_FRAMES = 3000
#: Feature frames per second of audio (Whisper's 10 ms hop).
FEATURE_FRAMES_PER_SECOND = 100
#: Encoder output frames per second (the second convolution halves the feature rate).
ENCODER_FRAMES_PER_SECOND = 50
#: Whisper's decoder holds 448 positions.
MAX_TARGET_TOKENS = 448
