"""User-facing errors.

Every problem a user can cause or fix (bad audio, a missing file, an unknown model, no GPU)
is raised as a subclass of :class:`AsrAdaptError` carrying a one-line message that says what
is wrong and what to do. The CLI prints that line and exits with status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class AsrAdaptError(Exception):
    """Base class for errors whose message is meant for the user."""

    exit_code = 2


class AudioError(AsrAdaptError):
    """Audio that cannot be read or used (missing, corrupt, empty, silent, too long)."""


class ManifestError(AsrAdaptError):
    """A manifest that cannot be read, or that points at audio that is not there."""


class ModelError(AsrAdaptError):
    """A model name, folder or file that cannot be resolved or loaded."""


class DeviceError(AsrAdaptError):
    """A compute device that was asked for but is not available."""


class OptionsError(AsrAdaptError):
    """An option value outside what the stage accepts."""
