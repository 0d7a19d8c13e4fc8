"""Command-line layer over the asr_adapt library (console script ``asr-adapt``)."""
