"""``asr-adapt serve --engine ct2``: the same server decoding with CTranslate2.

CTranslate2 has no per-row adapters, so each profile is its own model: the profile's adapter
merged and converted once (cached in the profile's folder, ``engines/ct2-<key>``, as
``transcribe --engine ct2`` does), loaded at its first request on the base model's worker
thread (a new adapter's conversion takes seconds: never on the event loop), and the least
recently used dropped past ``--max-adapters``. A batch's rows are grouped by profile, each
group decoded in one call; live streams use the ct2 streaming decoder. The windows, silence
and segments are the :class:`~asr_adapt.models.transcriber.Transcriber`'s, as for torch.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.engines import ct2_refusal
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.registry import CTC_MODEL_TYPES
from asr_adapt.models.whisper.ct2_decode import CT2StreamDecoder, ct2_decode
from asr_adapt.profiles.engines import check_ct2_family, load_profile_on
from asr_adapt.profiles.profile import Profile
from asr_adapt.server.adapters import BASE, AdapterKey
from asr_adapt.server.batching import DecodeSettings, DecodeWorker
from asr_adapt.server.engine import DecodeRequest, LocalEngine
from asr_adapt.server.names import ModelRef
from asr_adapt.server.options import ServeOptions
from asr_adapt.server.streams import PooledDecoder


class CT2Models:
    """The profiles' CTranslate2 models on one base model, least recently used first (the
    ct2 counterpart of :class:`~asr_adapt.server.adapters.ResidentAdapters`; only the worker
    thread touches it). ``view`` is the model the worker decodes with: :meth:`active` points
    it at one profile's model (or the base model's)."""

    def __init__(self, base: LoadedModel, capacity: int, device: str, dtype: str) -> None:
        self.base = base
        self.capacity = capacity
        self.device, self.dtype = device, dtype
        self._models: OrderedDict[AdapterKey, LoadedModel] = OrderedDict()
        self.view = replace(base, info=dict(base.info))
        #: Counters for the operator (and the tests): profile models loaded and dropped so far.
        self.loads = 0
        self.evictions = 0

    def resident(self) -> list[AdapterKey]:
        """Resident profiles' models, the least recently used first."""
        return list(self._models)

    def ensure(self, keys: Iterable[AdapterKey | None]) -> dict[AdapterKey | None, str]:
        """Load the models of ``keys`` (at most ``capacity`` distinct ones; converting a new
        adapter first); return each key's name in the batch log (the profile, ``"__base__"``)."""
        wanted = [key for key in dict.fromkeys(keys) if key is not None]
        if len(wanted) > self.capacity:
            raise ValueError(f"{len(wanted)} profiles wanted at once, {self.capacity} fit")
        for key in wanted:
            if key in self._models:
                self._models.move_to_end(key)
        for key in wanted:
            if key not in self._models:
                while len(self._models) >= self.capacity:
                    self._models.pop(next(k for k in self._models if k not in wanted))
                    self.evictions += 1
                self._models[key] = self._load(key)
        names: dict[AdapterKey | None, str] = {key: key.profile for key in wanted}
        names[None] = BASE
        return names

    def _load(self, key: AdapterKey) -> LoadedModel:
        loaded, _ = load_profile_on(key.profile, engine="ct2", device=self.device, dtype=self.dtype)
        self.loads += 1
        return loaded

    @contextmanager
    def active(self, key: AdapterKey | None) -> Iterator[None]:
        """Decode ``view`` with ``key``'s model (None: the plain base model)."""
        if key is None:
            loaded = self.base
        else:
            self.ensure([key])  # (the most recently used now)
            loaded = self._models[key]
        self.view.model, self.view.info = loaded.model, loaded.info
        yield


class CT2DecodeWorker(DecodeWorker):
    """:class:`~asr_adapt.server.batching.DecodeWorker` whose rows are decoded one profile
    group at a time, each group in one CTranslate2 call."""

    def __init__(self, loaded: LoadedModel, options: ServeOptions) -> None:
        self._where = (options.device, options.dtype)  # read by _adapters, from the base class' __init__
        super().__init__(loaded, options.max_adapters, options.batch_window_ms / 1000, options.max_batch)

    def _adapters(self, loaded: LoadedModel, capacity: int) -> CT2Models:
        return CT2Models(loaded, capacity, *self._where)

    def _decode(self, audios: list[np.ndarray], names: list[str], keys: list, settings: DecodeSettings) -> list[str]:
        texts: list[str] = [""] * len(audios)
        for key in dict.fromkeys(keys):
            indices = [i for i, k in enumerate(keys) if k == key]
            with self.adapters.active(key):
                decoded = ct2_decode(self.adapters.view, [audios[i] for i in indices], settings.options)
            for i, text in zip(indices, decoded):
                texts[i] = text
        return texts


class CT2LocalEngine(LocalEngine):
    """:class:`~asr_adapt.server.engine.LocalEngine` on the ct2 engine."""

    def _load_base(self, base: str) -> LoadedModel:
        return resolve_model(base, device=self.options.device, dtype=self.options.dtype, engine="ct2")

    def _new_worker(self, loaded: LoadedModel) -> DecodeWorker:
        return CT2DecodeWorker(loaded, self.options)

    def _target(self, ref: ModelRef):
        if ref.profile is not None:
            check_ct2_family(Profile.open(ref.profile))
        else:
            _refuse_ctc(ref)
        return super()._target(ref)

    def decoding_options(self, worker: DecodeWorker, request: DecodeRequest) -> TranscribeOptions:
        """``transcribe --engine ct2``'s defaults (its encoder windows too: no batch here
        names adapters inside one call), the server's beam and limits, the request's language."""
        if request.prompt or request.temperature > 0:
            raise OptionsError("this server decodes with --engine ct2, which takes no prompt and no temperature; "
                               "drop them")
        language = request.language or "en"
        worker.loaded.model.start_tokens(language)  # OptionsError for a language the model does not know
        return TranscribeOptions(beam_size=self.options.beam_size, language=language,
                                 max_seconds=self.options.max_audio_seconds)

    def stream_decoder(self, ref: ModelRef) -> PooledDecoder:
        """A live stream's decoder: the ct2 streaming decoder on the worker's view, which each
        step points at the stream's profile model."""
        worker, adapter, _ = self._target(ref)
        return PooledDecoder(worker, adapter, CT2StreamDecoder(worker.adapters.view))


def _refuse_ctc(ref: ModelRef) -> None:
    """The one-line refusal for a CTC base model (an operator's folder) on the ct2 engine."""
    try:
        model_type = json.loads((Path(ref.base).expanduser() / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # not a transformers folder: loading says what it is
    if model_type in CTC_MODEL_TYPES:
        raise ct2_refusal(f"'{ref.name}'", model_type)


def local_engine(options: ServeOptions) -> LocalEngine:
    """The engine that runs the models in this process, for ``options.engine``."""
    return CT2LocalEngine(options) if options.engine == "ct2" else LocalEngine(options)


__all__ = ["CT2DecodeWorker", "CT2LocalEngine", "CT2Models", "local_engine"]
