"""One thread per base model runs it: pieces of audio that requests send within a short
window are decoded together in one batch, whichever profiles they name.

Requests wait in their own threads (see :mod:`asr_adapt.server.engine`); each hands its
pieces here and blocks on their futures. The thread takes the first piece, waits up to
``window`` seconds for more (at most ``max_rows``), groups them by decoding settings, makes
their adapters resident and decodes each group at once: for Whisper one ``generate`` with
PEFT's ``adapter_names``, one name per row (``"__base__"`` for the plain model); for other
families (CTC), one pass per adapter. Live streams' steps are run here too, one at a time,
with their adapter active, so that nothing else touches the model meanwhile."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from asr_adapt.models.base import LoadedModel
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.repetition import compression_ratio, is_runaway
from asr_adapt.models.whisper.decode import whisper_decode
from asr_adapt.server.adapters import AdapterKey, ResidentAdapters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSettings:
    """What rows must share to be decoded in one batch."""

    options: TranscribeOptions
    prompt: str = ""
    temperature: float = 0.0


@dataclass
class _Row:
    audio: np.ndarray
    adapter: AdapterKey | None
    settings: DecodeSettings
    future: Future


@dataclass
class _Call:
    adapter: AdapterKey | None
    run: Callable[[], Any]
    future: Future


class DecodeWorker:
    """The thread that owns ``loaded``'s model (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, max_adapters: int, window_seconds: float, max_rows: int) -> None:
        self.loaded = loaded
        self.adapters = self._adapters(loaded, max_adapters)
        self.window = window_seconds
        self.max_rows = max_rows
        self._jobs: queue.Queue = queue.Queue()
        #: The adapters of each recent batch, in row order (for the operator and the tests).
        self.recent_batches: deque[tuple[str, ...]] = deque(maxlen=256)
        self.counts: Counter = Counter()
        self._thread = threading.Thread(target=self._loop, name=f"asr-adapt model {loaded.name}", daemon=True)
        self._thread.start()

    def _adapters(self, loaded: LoadedModel, capacity: int):
        """What keeps the profiles' adapters resident (another engine's worker holds its own)."""
        return ResidentAdapters(loaded, capacity)

    # ----------------------------------------------------------------- what requests call

    def decode(self, audios: Sequence[np.ndarray], adapter: AdapterKey | None, settings: DecodeSettings,
               deadline: float | None = None) -> list[str]:
        """Texts of ``audios`` (pieces of at most 30 s) with ``adapter``; TimeoutError past
        ``deadline`` (a ``time.monotonic()`` value)."""
        rows = [_Row(np.asarray(a, dtype=np.float32), adapter, settings, Future()) for a in audios]
        for row in rows:
            self._jobs.put(row)
        return [_wait(row.future, deadline, rows) for row in rows]

    def call(self, adapter: AdapterKey | None, run: Callable[[], Any], deadline: float | None = None) -> Any:
        """``run()`` on this thread with ``adapter`` active (a live stream's step)."""
        call = _Call(adapter, run, Future())
        self._jobs.put(call)
        return _wait(call.future, deadline, [call])

    def close(self) -> None:
        """Stop the thread once the jobs before this are done."""
        self._jobs.put(None)

    # ----------------------------------------------------------------- the thread

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            rows, calls = self._gather(job)
            with torch.inference_mode():
                if rows:
                    self._run_rows(rows)
                for call in calls:
                    self._run_call(call)

    def _gather(self, first) -> tuple[list[_Row], list[_Call]]:
        """The first job and, when it is a row, what arrives within the batching window."""
        if isinstance(first, _Call):
            return [], [first]
        rows, calls = [first], []
        deadline = time.monotonic() + self.window
        while len(rows) < self.max_rows:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            (rows if isinstance(job, _Row) else calls).append(job)
        return rows, calls

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            with self.adapters.active(call.adapter):
                call.future.set_result(call.run())
        except BaseException as error:  # handed to the request, which answers it
            call.future.set_exception(error)

    def _run_rows(self, rows: list[_Row]) -> None:
        rows = [row for row in rows if row.future.set_running_or_notify_cancel()]
        groups: dict[DecodeSettings, list[_Row]] = {}
        for row in rows:
            groups.setdefault(row.settings, []).append(row)
        for settings, group in groups.items():
            for chunk in _chunks(group, self.adapters.capacity):
                self._run_chunk(settings, chunk)

    def _run_chunk(self, settings: DecodeSettings, rows: list[_Row]) -> None:
        try:
            names = self._resident(rows)
            rows = [row for row in rows if not row.future.done()]
            if not rows:
                return
            texts = self._decode([row.audio for row in rows], [names[row.adapter] for row in rows],
                                 [row.adapter for row in rows], settings)
        except BaseException as error:
            for row in rows:
                if not row.future.done():
                    row.future.set_exception(error)
            return
        self.counts["batches"] += 1
        self.counts["rows"] += len(rows)
        self.recent_batches.append(tuple(names[row.adapter] for row in rows))
        for row, text in zip(rows, texts):
            row.future.set_result(text)

    def _resident(self, rows: list[_Row]) -> dict:
        """Load the rows' adapters; a row whose adapter cannot be loaded gets that error."""
        names: dict = {}
        for key in dict.fromkeys(row.adapter for row in rows):
            try:
                names.update(self.adapters.ensure([key, *[k for k in names if k is not None]]))
            except Exception as error:
                for row in rows:
                    if row.adapter == key:
                        row.future.set_exception(error)
        return names

    def _decode(self, audios: list[np.ndarray], names: list[str], keys: list, settings: DecodeSettings) -> list[str]:
        if self.loaded.engine.name != "whisper":
            return self._decode_per_adapter(audios, keys, settings)
        extra = self._generate_extra(settings)
        if self.adapters.has_adapters:
            extra["adapter_names"] = names
        texts = whisper_decode(self.loaded, audios, settings.options, **extra)
        if extra:  # whisper_decode retries repetition loops itself only without extra arguments
            texts = self._retry_runaways(audios, names, texts, settings, extra)
        return texts

    def _generate_extra(self, settings: DecodeSettings) -> dict:
        extra: dict = {}
        if settings.prompt:
            processor = self.loaded.processor
            extra["prompt_ids"] = processor.get_prompt_ids(settings.prompt, return_tensors="pt").to(
                self.loaded.placement.device)
        if settings.temperature > 0:
            extra.update(do_sample=True, temperature=settings.temperature, num_beams=1)
        return extra

    def _retry_runaways(self, audios, names, texts, settings, extra) -> list[str]:
        """As offline transcription does: a repetition loop is decoded again without repeated
        4-grams, and the retry kept when it compresses worse (see ``whisper_decode``)."""
        for i, text in enumerate(texts):
            if is_runaway(text):
                one = dict(extra)
                if "adapter_names" in one:
                    one["adapter_names"] = [names[i]]
                retry = whisper_decode(self.loaded, [audios[i]], settings.options, no_repeat_ngram_size=4, **one)[0]
                if compression_ratio(retry) < compression_ratio(text):
                    texts[i] = retry
        return texts

    def _decode_per_adapter(self, audios, keys, settings: DecodeSettings) -> list[str]:
        texts: list[str] = [""] * len(audios)
        for key in dict.fromkeys(keys):
            indices = [i for i, k in enumerate(keys) if k == key]
            with self.adapters.active(key):
                decoded = self.loaded.engine.decode(self.loaded, [audios[i] for i in indices], settings.options)
            for i, text in zip(indices, decoded):
                texts[i] = text
        return texts


def _chunks(rows: list[_Row], capacity: int) -> list[list[_Row]]:
    """Rows in order, cut so that no chunk names more than ``capacity`` adapters."""
    chunks: list[list[_Row]] = [[]]
    adapters: set = set()
    for row in rows:
        if row.adapter is not None and row.adapter not in adapters and len(adapters) >= capacity:
            chunks.append([])
            adapters = set()
        if row.adapter is not None:
            adapters.add(row.adapter)
        chunks[-1].append(row)
    return chunks


def _wait(future: Future, deadline: float | None, jobs: list) -> Any:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        for job in jobs:  # what has not started yet is dropped
            job.future.cancel()
        raise


__all__ = ["DecodeSettings", "DecodeWorker"]
