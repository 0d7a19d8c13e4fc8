"""Models: the Backend protocol, the registry of families, model loading, and one place per family."""
