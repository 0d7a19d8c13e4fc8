"""Bottom layer: errors, atomic file writes, device choice. Imports nothing else of asr_adapt."""
