"""Decoding: offline transcripts in output formats, streaming and live transcription."""
