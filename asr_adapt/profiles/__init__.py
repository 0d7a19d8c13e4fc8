"""Profiles: one folder per speaker or group (store, archives, enrollment, adapters on a model)."""
