"""Writing transcripts as plain text, JSON, SubRip or WebVTT subtitles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the transcriber module loads torch
    from asr_adapt.models.transcriber import Transcript

OUTPUT_FORMATS = ("txt", "json", "srt")


def srt_time(seconds: float, separator: str = ",") -> str:
    """``HH:MM:SS,mmm`` as SubRip wants it (WebVTT: ``.`` before the milliseconds)."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    """One subtitle per segment, numbered from 1."""
    blocks = [f"{n}\n{srt_time(s.start)} --> {srt_time(s.end)}\n{s.text}\n"
              for n, s in enumerate(transcript.segments, start=1)]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    """A WebVTT document: the header, then one cue per segment."""
    cues = [f"{srt_time(s.start, '.')} --> {srt_time(s.end, '.')}\n{s.text}\n" for s in transcript.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(transcripts: Sequence[Transcript], fmt: str) -> str:
    """All transcripts in one document of format ``fmt``."""
    if fmt == "txt":
        if len(transcripts) == 1:
            return transcripts[0].text + "\n"
        return "".join(f"{t.source}\t{t.text}\n" for t in transcripts)
    if fmt == "json":
        data = [t.to_dict() for t in transcripts]
        return json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "srt":
        if len(transcripts) == 1:
            return to_srt(transcripts[0])
        return "\n".join(f"# {t.source}\n{to_srt(t)}" for t in transcripts)
    raise ValueError(f"unknown format {fmt}")


def render_one(transcript: Transcript, fmt: str) -> str:
    """One transcript as a file of format ``fmt``."""
    return render([transcript], fmt)
