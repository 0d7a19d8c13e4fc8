"""Audio: loading and checks (one place owns SAMPLE_RATE), VAD, microphones and file replay, augmentation."""
