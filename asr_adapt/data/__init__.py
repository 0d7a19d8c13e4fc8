"""Data: manifests and their formats, unlabeled-audio sources, WER/CER scoring."""
