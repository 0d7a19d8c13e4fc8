"""Run a model over a labeled manifest and score it (transcription + :mod:`asr_adapt.data.scoring`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

from asr_adapt.core.errors import ManifestError
from asr_adapt.data.scoring import EvalReport, score
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.transcriber import Transcriber
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import reads_short_windows


def evaluate_manifest(loaded: LoadedModel, utterances: Sequence[Utterance],
                      options: TranscribeOptions | None = None, progress: bool = False) -> EvalReport:
    """Transcribe every labeled utterance and return WER/CER with per-speaker and
    per-utterance detail; the report's ``meta`` records the model and decoding options."""
    labeled = [u for u in utterances if u.text is not None]
    if not labeled:
        raise ManifestError("the manifest has no transcribed utterances to score; add a 'text' to each line")
    options = options or TranscribeOptions()
    transcriber = Transcriber(loaded, options)
    started = time.perf_counter()
    hypotheses = [t.text for t in transcriber.transcribe_files([u.audio for u in labeled], progress=progress)]
    elapsed = time.perf_counter() - started
    audio_seconds = sum(u.duration or 0.0 for u in labeled)
    report = score([u.text for u in labeled], hypotheses, ids=[u.id for u in labeled],
                   speakers=[u.speaker for u in labeled])
    report.meta.update({
        "model": loaded.name, "model_kind": loaded.kind, "model_path": loaded.path,
        "weights_sha256": loaded.weights_sha256, "device": str(loaded.placement), "engine": loaded.engine.runtime,
        "options": asdict(transcriber.options), "skipped_unlabeled": len(utterances) - len(labeled),
        # What "auto" resolved to for this model: the encoder read short windows, or 30 s.
        "encoder_window_read": "short" if reads_short_windows(loaded, transcriber.options) else "full",
        "transcribe_seconds": round(elapsed, 2),
        "real_time_factor": round(elapsed / audio_seconds, 4) if audio_seconds else None,
    })
    return report
