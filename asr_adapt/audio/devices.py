"""Finding the microphone: importing sounddevice (PortAudio) and choosing an input device.

Every problem a user can fix here (no PortAudio, no microphone, an unknown device name) is
raised as :class:`MicrophoneError` with one line; :mod:`asr_adapt.audio.microphone` raises it
too for a device that cannot be opened or vanishes.
"""

from __future__ import annotations

from typing import Any

from asr_adapt.core.errors import AsrAdaptError

PORTAUDIO_MISSING = ("the PortAudio library is missing: install it (Debian/Ubuntu: apt-get install "
                     "libportaudio2; macOS: brew install portaudio)")
NO_MICROPHONE = "no microphone found; plug one in, or enroll from recordings with --from DIR"


class MicrophoneError(AsrAdaptError):
    """No usable microphone: PortAudio missing, no input device, or a device that fails."""


def import_sounddevice() -> Any:
    """Import :mod:`sounddevice`, turning a missing PortAudio into :class:`MicrophoneError`."""
    try:
        import sounddevice
    except OSError as error:
        if "portaudio" in str(error).lower():
            raise MicrophoneError(PORTAUDIO_MISSING) from None
        raise MicrophoneError(f"the audio system cannot start ({first_line(error)}); check "
                              "the PortAudio installation") from None
    except ImportError:
        raise MicrophoneError("the sounddevice package is missing: pip install sounddevice") \
            from None
    except Exception as error:  # PortAudioError from Pa_Initialize at import time
        raise MicrophoneError(f"the audio system cannot start ({first_line(error)}); check "
                              "the sound setup (ALSA/PulseAudio)") from None
    return sounddevice


def first_line(error: BaseException) -> str:
    """The first line of an error's message (at most 160 characters), for one-line errors."""
    args = getattr(error, "args", ())
    text = str(args[0]) if args and isinstance(args[0], str) else str(error)
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return text[:160]


def is_portaudio_error(sd: Any, error: BaseException) -> bool:
    """Whether ``error`` is sounddevice's ``PortAudioError`` (``sd`` is the module)."""
    kind = getattr(sd, "PortAudioError", None)
    return isinstance(kind, type) and isinstance(error, kind)


def _default_input_index(sd: Any) -> int | None:
    """The default input device's index, or ``None`` when PortAudio has none."""
    try:
        info = sd.query_devices(kind="input")
    except Exception as error:  # PortAudioError "Error querying device -1", ValueError
        if is_portaudio_error(sd, error) or isinstance(error, ValueError):
            return None
        raise
    index = info.get("index") if isinstance(info, dict) else None
    return int(index) if isinstance(index, int) and index >= 0 else None


def list_input_devices() -> list[dict]:
    """The input devices PortAudio sees, each as ``{"index", "name", "channels",
    "default_samplerate", "is_default"}`` (``hostapi`` too, by name, when known)."""
    sd = import_sounddevice()
    try:
        devices = list(sd.query_devices())
    except Exception as error:
        if is_portaudio_error(sd, error):
            raise MicrophoneError(f"cannot list audio devices ({first_line(error)}); check the "
                                  "sound setup") from None
        raise
    default = _default_input_index(sd)
    inputs = []
    for position, info in enumerate(devices):
        channels = int(info.get("max_input_channels", 0) or 0)
        if channels <= 0:
            continue
        index = int(info.get("index", position))
        entry = {"index": index, "name": str(info.get("name", f"device {index}")),
                 "channels": channels,
                 "default_samplerate": float(info.get("default_samplerate") or 0.0),
                 "is_default": index == default}
        try:
            entry["hostapi"] = str(sd.query_hostapis(info["hostapi"])["name"])
        except Exception:
            pass
        inputs.append(entry)
    return inputs


def _describe(devices: list[dict]) -> str:
    shown = ", ".join(f"{d['index']} '{d['name']}'" for d in devices[:12])
    more = f" and {len(devices) - 12} more" if len(devices) > 12 else ""
    return shown + more


def resolve_input_device(spec: str | int | None = None) -> dict:
    """The input device ``spec`` names, as an entry of :func:`list_input_devices`.

    ``None`` is the default input (the first input when PortAudio names no default); an
    int or a string of digits is a device index; any other string is a case-insensitive
    part of the device name (an exact name wins over a partial one; several partial
    matches are an error that lists them).
    """
    devices = list_input_devices()
    if not devices:
        raise MicrophoneError(NO_MICROPHONE)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        for device in devices:
            if device["is_default"]:
                return device
        return devices[0]
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise MicrophoneError(f"input device must be an index or a name, not {spec!r}")
    text = spec.strip() if isinstance(spec, str) else str(spec)
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        for device in devices:
            if device["index"] == index:
                return device
        raise MicrophoneError(f"there is no input device {index}; available inputs: "
                              f"{_describe(devices)}")
    wanted = text.casefold()
    exact = [d for d in devices if d["name"].casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [d for d in devices if wanted in d["name"].casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise MicrophoneError(f"no input device matches '{text}'; available inputs: "
                              f"{_describe(devices)} (give an index or part of a name)")
    raise MicrophoneError(f"'{text}' matches {len(partial)} input devices: {_describe(partial)}; "
                          "give an index or a longer part of the name")


__all__ = [
    "NO_MICROPHONE",
    "PORTAUDIO_MISSING",
    "MicrophoneError",
    "import_sounddevice",
    "list_input_devices",
    "resolve_input_device",
]
