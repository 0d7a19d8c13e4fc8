"""asr_adapt: personalized speech recognition with LoRA adapters for Whisper."""

__version__ = "0.1.0"
