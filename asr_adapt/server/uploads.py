"""A transcription request's multipart form, read within the server's limits, and its audio.

The body is counted while it arrives: past the upload limit the request is answered 413
before the rest is read. The form's fields are checked as OpenAI names them; the file is
decoded by :mod:`asr_adapt.audio.io` (which refuses corrupt, empty, NaN and truncated audio)
from a private temporary file, whose path never appears in an answer."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from asr_adapt.audio.io import audio_info, load_audio
from asr_adapt.core.errors import AudioError
from asr_adapt.server.engine import DecodeRequest
from asr_adapt.server.errors import ApiError, too_large

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
#: Room for the form's other fields and the multipart framing around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
#: Whisper reads at most 224 prompt tokens; this many characters stay well below.
MAX_PROMPT_CHARS = 800
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}")


@dataclass(frozen=True)
class TranscriptionForm:
    """The checked fields of ``POST /v1/audio/transcriptions``."""

    model: str
    response_format: str
    request: DecodeRequest
    granularities: tuple[str, ...]
    filename: str
    data: bytes


def _invalid(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param=param)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that answers 413 as soon as the body passes ``limit`` bytes."""
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(f"the upload is larger than the server's limit of {limit - FORM_OVERHEAD_BYTES} bytes")
        return message

    return counting


async def read_form(request: Request, max_upload_bytes: int) -> TranscriptionForm:
    """The request's form, within ``max_upload_bytes``; ApiError (400, 413) otherwise."""
    limit = max_upload_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"the upload is larger than the server's limit of {max_upload_bytes} bytes")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise _invalid("send the audio as multipart/form-data with a 'file' field", "file", "invalid_multipart")
    counted = Request(request.scope, _limited(request.receive, limit))
    async with counted.form(max_files=1, max_fields=32, max_part_size=64 * 1024) as form:
        upload = form.get("file")
        if isinstance(upload, str):
            raise _invalid("'file' must be a file part (with a filename), not a text field", "file")
        if not isinstance(upload, UploadFile):
            raise _invalid("the 'file' field is missing: send the audio as a file part named 'file'", "file")
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise too_large(f"the file is larger than the server's limit of {max_upload_bytes} bytes")
        if not data:
            raise _invalid("the uploaded file is empty", "file", "invalid_audio")
        return _fields(form, upload.filename or "", data)


def _text(form, name: str, default: str | None = None) -> str | None:
    value = form.get(name, default)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"'{name}' must be a text field, not a file", name)
    return value


def _fields(form, filename: str, data: bytes) -> TranscriptionForm:
    model = (_text(form, "model") or "").strip()
    if not model or len(model) > 256:
        raise _invalid("'model' is required: a profile name or a base model such as whisper-tiny.en", "model")
    response_format = _text(form, "response_format", "json")
    if response_format not in RESPONSE_FORMATS:
        raise _invalid(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}", "response_format")
    language = _text(form, "language")
    if language is not None and language != "" and not _LANGUAGE.fullmatch(language):
        raise _invalid("language must be an ISO-639-1 code such as 'en'", "language")
    prompt = _text(form, "prompt", "") or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(f"prompt must be at most {MAX_PROMPT_CHARS} characters", "prompt")
    if (_text(form, "stream", "false") or "false").lower() not in ("false", "0"):
        raise _invalid("streaming answers are not offered here; use the WebSocket /v1/live", "stream")
    return TranscriptionForm(model=model, response_format=response_format,
                             request=DecodeRequest(language=language or None, prompt=prompt.strip(),
                                                   temperature=_temperature(_text(form, "temperature", "0"))),
                             granularities=_granularities(form, response_format), filename=filename, data=data)


def _temperature(text: str | None) -> float:
    try:
        value = float(text or 0)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # (NaN fails too)
        raise _invalid("temperature must be a number between 0 and 1", "temperature")
    return value


def _granularities(form, response_format: str) -> tuple[str, ...]:
    values = [v for key in ("timestamp_granularities[]", "timestamp_granularities") for v in form.getlist(key)]
    if not all(isinstance(v, str) for v in values):
        raise _invalid("timestamp_granularities must be text", "timestamp_granularities")
    if "word" in values:
        raise _invalid("word timestamps are not offered; ask for 'segment'", "timestamp_granularities",
                       "unsupported_value")
    if any(v != "segment" for v in values):
        raise _invalid("timestamp_granularities may hold 'segment'", "timestamp_granularities")
    if values and response_format != "verbose_json":
        raise _invalid("timestamp_granularities need response_format verbose_json", "timestamp_granularities")
    return tuple(dict.fromkeys(values))


def decode_upload(data: bytes, filename: str, max_seconds: float) -> np.ndarray:
    """The upload as 16 kHz mono float32, read by :mod:`asr_adapt.audio.io`; ApiError 413
    past ``max_seconds``, 400 for audio it refuses."""
    suffix = Path(filename).suffix
    with tempfile.TemporaryDirectory(prefix="asr-adapt-upload-") as folder:
        path = Path(folder) / ("upload" + (suffix if _SUFFIX.fullmatch(suffix) else ""))
        path.write_bytes(data)
        try:
            duration = audio_info(path).duration
            if duration > max_seconds:
                raise too_large(f"the audio lasts {duration:.0f} s, longer than the server's limit of "
                                f"{max_seconds:.0f} s")
            return load_audio(path, max_seconds=None)
        except AudioError as error:
            raise ApiError(400, str(error).replace(str(path), "the uploaded file"), "invalid_audio",
                           param="file") from None


__all__ = ["RESPONSE_FORMATS", "TranscriptionForm", "decode_upload", "read_form"]
