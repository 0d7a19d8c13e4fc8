"""What serves the app's requests: the :class:`Engine` interface, and :class:`LocalEngine`,
which runs every model in this process.

An engine is what :func:`asr_adapt.server.app.create_app` forwards to once a request is
authenticated, its model name resolved (:mod:`asr_adapt.server.names`) and its audio read.
Another engine (Ray Serve's, which forwards to replicas) only has to offer the same methods::

    class Engine(Protocol):
        async def transcribe(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest) -> Transcript
        async def open_stream(self, ref: ModelRef) -> LiveStream      # see asr_adapt.server.streams
        def close(self) -> None

``audio`` is 16 kHz mono float32 (checked by :mod:`asr_adapt.audio.io`); errors are raised as
:class:`~asr_adapt.core.errors.AsrAdaptError` (answered 400) or ``TimeoutError`` (504).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from asr_adapt.core.errors import ModelError, OptionsError
from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import Transcriber, Transcript
from asr_adapt.profiles.personal import check_base_matches, reads_best_in_short_windows
from asr_adapt.profiles.profile import Profile
from asr_adapt.server.adapters import AdapterKey
from asr_adapt.server.batching import DecodeSettings, DecodeWorker
from asr_adapt.server.names import ModelRef
from asr_adapt.server.options import ServeOptions
from asr_adapt.server.streams import LiveStream, PooledDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeRequest:
    """The decoding fields of one transcription request (OpenAI's names)."""

    language: str | None = None
    prompt: str = ""
    temperature: float = 0.0


class Engine(Protocol):
    """What the app forwards to (see the module docstring)."""

    async def transcribe(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest) -> Transcript:
        """The transcript of ``audio`` (16 kHz mono float32) with ``ref``'s model."""

    async def open_stream(self, ref: ModelRef) -> LiveStream:
        """A live stream on ``ref``'s model."""

    def close(self) -> None:
        """The server stops: release what the engine holds."""


class PooledTranscriber(Transcriber):
    """:class:`Transcriber` (windows, silence, segments: what ``transcribe`` does) whose
    batches go to the base model's :class:`DecodeWorker`, to share a batch with other
    requests."""

    def __init__(self, view: LoadedModel, options: TranscribeOptions, worker: DecodeWorker,
                 adapter: AdapterKey | None, request: DecodeRequest, deadline: float) -> None:
        super().__init__(view, options)
        self.worker, self.adapter, self.deadline = worker, adapter, deadline
        self.settings = DecodeSettings(self.options, request.prompt, request.temperature)

    def _decode(self, audios: list[np.ndarray]) -> list[str]:
        return self.worker.decode(audios, self.adapter, self.settings, self.deadline)


class LocalEngine:
    """Every base model loaded once in this process, each run by its own
    :class:`DecodeWorker`; each profile's adapter resident on its base model."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._workers: dict[str, DecodeWorker] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        # Requests mostly wait on their batch: many threads, few of them busy at once.
        self._executor = ThreadPoolExecutor(max_workers=max(16, 4 * options.max_batch),
                                            thread_name_prefix="asr-adapt request")

    def worker(self, base: str) -> DecodeWorker:
        """The worker of base model ``base``, loading the model the first time (once; a
        request for another base model does not wait for this one's load)."""
        if base in self._workers:
            return self._workers[base]
        with self._lock:
            lock = self._loading.setdefault(base, threading.Lock())
        with lock:
            if base not in self._workers:
                try:
                    loaded = self._load_base(base)
                except ModelError as error:  # its message may name the operator's folders
                    log.error("cannot load %s: %s", base, error)
                    raise ModelError("the model's base model cannot be loaded on this server; its log says why") from None
                self._workers[base] = self._new_worker(loaded)
        return self._workers[base]

    def _load_base(self, base: str) -> LoadedModel:
        return resolve_model(base, device=self.options.device, dtype=self.options.dtype)

    def _new_worker(self, loaded: LoadedModel) -> DecodeWorker:
        return DecodeWorker(loaded, self.options.max_adapters, self.options.batch_window_ms / 1000,
                            self.options.max_batch)

    def _target(self, ref: ModelRef) -> tuple[DecodeWorker, AdapterKey | None, LoadedModel]:
        """The worker, the adapter, and a view of the model named as the client named it."""
        worker = self.worker(ref.base)
        if ref.profile is None:
            return worker, None, replace(worker.loaded, name=ref.name, info={})
        profile = Profile.open(ref.profile)
        check_base_matches(profile, worker.loaded)
        folder = profile.adapter_dir
        key = AdapterKey(profile.name, str(folder)) if folder is not None else None
        info = {"profile": profile.name, "adapter": str(folder) if folder else None,
                "short_windows": reads_best_in_short_windows(profile)}
        return worker, key, replace(worker.loaded, name=ref.name, info=info)

    def decoding_options(self, worker: DecodeWorker, request: DecodeRequest) -> TranscribeOptions:
        """``transcribe``'s defaults, the server's beam and limits, the request's language.
        The encoder reads Whisper's full window: mixed-adapter batches name adapters inside
        ``generate``, which a shortened window's separate encoder pass would bypass."""
        language = request.language or "en"
        config = worker.loaded.model.generation_config
        if getattr(config, "is_multilingual", False) and f"<|{language}|>" not in (config.lang_to_id or {}):
            raise OptionsError(f"language {language!r} is not one this model knows; give an ISO-639-1 code such as 'en'")
        if request.prompt and not worker.loaded.engine.takes_prompt:
            raise OptionsError(f"'{worker.loaded.name}' is a CTC model, which takes no prompt; drop the prompt")
        return TranscribeOptions(beam_size=self.options.beam_size, language=language,
                                 max_seconds=self.options.max_audio_seconds, encoder_window="full")

    def transcribe_now(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest, deadline: float) -> Transcript:
        """The blocking transcription (runs in a request thread)."""
        worker, adapter, view = self._target(ref)
        options = self.decoding_options(worker, request)
        transcriber = PooledTranscriber(view, options, worker, adapter, request, deadline)
        return transcriber.transcribe_audio(audio, source=ref.name)

    async def transcribe(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest) -> Transcript:
        """:meth:`transcribe_now` in a request thread, within the server's request timeout."""
        deadline = time.monotonic() + self.options.request_timeout
        return await self._run(self.transcribe_now, ref, audio, request, deadline)

    def stream_decoder(self, ref: ModelRef) -> PooledDecoder:
        """A live stream's ``(buffer, prompt) -> text`` decoder for ``ref``, run by its base
        model's worker (blocking: loads the model the first time). Ray's replicas serve these."""
        worker, adapter, view = self._target(ref)
        return PooledDecoder(worker, adapter, view.engine.streaming_decoder(view))

    async def open_stream(self, ref: ModelRef) -> LiveStream:
        """A live stream through the streaming core of ``asr-adapt live``, with its default options."""
        decoder = await self._run(self.stream_decoder, ref)
        return LiveStream(StreamingProcessor(decoder, StreamingOptions()), self._executor)

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        """Stop the workers' threads (after the batch they are on) and the request threads."""
        for worker in self._workers.values():
            worker.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["DecodeRequest", "Engine", "LocalEngine", "PooledTranscriber"]
