"""A transcript in the response format a client asked for, as OpenAI's API shapes it:
``json`` ``{"text"}``, ``text``, ``srt``, ``vtt`` and ``verbose_json`` with segments."""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from asr_adapt.decode.formats import to_srt, to_vtt
from asr_adapt.models.repetition import compression_ratio
from asr_adapt.models.transcriber import Transcript
from asr_adapt.server.engine import DecodeRequest


def verbose(transcript: Transcript, request: DecodeRequest) -> dict:
    """OpenAI's ``verbose_json``. The decoder's log-probabilities are not kept, so
    ``avg_logprob`` and ``no_speech_prob`` are null; silent pieces have no segment at all."""
    language = request.language or transcript.options.get("language") or "en"
    segments = [{"id": number, "seek": int(round(s.start * 100)), "start": s.start, "end": s.end, "text": s.text,
                 "tokens": [], "temperature": request.temperature, "avg_logprob": None,
                 "compression_ratio": round(compression_ratio(s.text), 3) if s.text else 0.0,
                 "no_speech_prob": None}
                for number, s in enumerate(transcript.segments)]
    return {"task": "transcribe", "language": LANGUAGES.get(language, language), "duration": transcript.duration,
            "text": transcript.text, "segments": segments}


def render_response(transcript: Transcript, response_format: str, request: DecodeRequest) -> Response:
    """The HTTP response for ``transcript`` in ``response_format`` (checked by the form)."""
    if response_format == "json":
        return JSONResponse({"text": transcript.text})
    if response_format == "verbose_json":
        return JSONResponse(verbose(transcript, request))
    if response_format == "srt":
        return PlainTextResponse(to_srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(transcript), media_type="text/vtt")
    return PlainTextResponse(transcript.text + "\n")


__all__ = ["render_response", "verbose"]
