"""Reports: evaluation of a manifest, before/after comparison tables and plots, the demo."""
