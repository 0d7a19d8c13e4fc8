"""A profile on an engine. ``torch``: the adapter put on its base model by PEFT and merged (the
path that also trains). ``ct2``: the adapter merged and converted once by CTranslate2's own
converter, then decoded by CTranslate2 (int8 on the CPU, float16 on a GPU).

The conversion is cached in the profile's folder, ``engines/ct2-<key>/``, where the key is a
hash of the adapter's files, the base model's weights and the adapter scale: a new adapter
(``asr-adapt adapt``) gets a new conversion at its first use, and the old one is removed. It is
built in a hidden folder and renamed into place, so a run killed halfway leaves nothing that a
later run would read, and two runs converting at once both end with one whole copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from asr_adapt.core.errors import ModelError
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.engines import check_engine, ct2_refusal
from asr_adapt.models.loading import base_fingerprint, load_ct2_folder, resolve_model
from asr_adapt.models.whisper.ct2_build import STORAGE_QUANTIZATION, build_cached, convert_loaded, is_built, staging_pid
from asr_adapt.models.whisper.ct2_runtime import CT2WhisperModel, ct2_placement
from asr_adapt.profiles.info import ProfileError
from asr_adapt.profiles.personal import (
    AdapterSwitcher, apply_adapter, check_adapter_scale, check_base_matches, check_model_name, load_profile_model,
    reads_best_in_short_windows, require_adapter,
)
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import is_leftover, remove_path

#: The profile's sub-folder holding its engine conversions.
ENGINES_FOLDER = "engines"
#: Bumped when what a conversion holds changes, so that older ones are rebuilt.
CONVERSION_VERSION = 1


def load_profile_on(name: str, engine: str | None = None, model: str | None = None, device: str = "auto",
                    dtype: str = "auto", adapter_scale: float | None = None,
                    threads: int = 0) -> tuple[LoadedModel, Profile]:
    """Profile ``name``'s model ready to decode on ``engine`` (see the module docstring; None:
    the default engine); the other arguments are :func:`~asr_adapt.profiles.personal.load_profile_model`'s,
    and ``threads`` sets the ct2 engine's CPU threads (0: its own choice). With ``ct2``, the
    first use of an adapter converts it (seconds for tiny.en); later runs load the conversion."""
    if check_engine(engine) == "torch":
        return load_profile_model(name, model=model, device=device, dtype=dtype, adapter_scale=adapter_scale)
    check_adapter_scale(adapter_scale)
    placement = ct2_placement(device, dtype)  # a bad device fails before anything is read
    profile = Profile.open(name)
    check_model_name(profile, model)
    check_ct2_family(profile)
    require_adapter(profile)
    base = profile.info.base_model
    if profile.adapter_dir is None:  # keeps no adapter: the base model reads for it
        loaded = resolve_model(base, device=device, dtype=dtype, engine="ct2", threads=threads)
        loaded.info.update(profile=profile.name, adapter=None, short_windows=False)
        return loaded, profile
    folder = profile_ct2_folder(profile, adapter_scale)
    loaded = load_ct2_folder(folder, base, "ct2", placement, profile.info.base_weights_sha256, threads)
    _mark(loaded, profile, adapter_scale)
    return loaded, profile


def check_ct2_family(profile: Profile) -> None:
    """Refuse a CTC (wav2vec2 & co.) profile on the ct2 engine, in one line."""
    backend = profile.info.backend
    if backend and backend != "whisper":
        raise ct2_refusal(f"profile '{profile.name}'", backend)


def apply_profile(loaded: LoadedModel, profile: Profile, scale: float | None = None) -> LoadedModel:
    """Put ``profile``'s adapter onto the base model ``loaded``, whichever its engine: merged by
    PEFT (torch), or the profile's CTranslate2 conversion in place of the base model's (ct2)."""
    if loaded.engine.runtime == "torch":
        return apply_adapter(loaded, profile, scale=scale)
    check_ct2_family(profile)
    if profile.adapter_dir is None:
        require_adapter(profile)
        loaded.info.update(profile=profile.name, adapter=None, short_windows=False)
        return loaded
    check_base_matches(profile, loaded)
    loaded.model = CT2WhisperModel(profile_ct2_folder(profile, scale), loaded.placement, threads=loaded.model.threads)
    _mark(loaded, profile, scale)
    return loaded


def _mark(loaded: LoadedModel, profile: Profile, scale: float | None) -> None:
    """What a profile's model records, as :func:`apply_adapter` records it for torch."""
    loaded.name = f"{profile.info.base_model}+{profile.name}"
    adapter = profile.adapter_dir
    loaded.info.update(profile=profile.name, adapter=str(adapter) if adapter else None,
                       short_windows=bool(adapter) and reads_best_in_short_windows(profile))
    if scale is not None and scale != 1:
        loaded.info["adapter_scale"] = scale


def conversion_key(profile: Profile, scale: float | None) -> str:
    """sha256 of what a conversion depends on: the adapter's files, the base model's weights
    (a fingerprint), the scale and how it is stored."""
    digest = hashlib.sha256(json.dumps([CONVERSION_VERSION, STORAGE_QUANTIZATION, base_fingerprint(
        profile.info.base_model), 1.0 if scale is None else float(scale)]).encode())
    for path in sorted(p for p in profile.adapter_dir.iterdir() if p.is_file() and p.name != "README.md"):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def profile_ct2_folder(profile: Profile, scale: float | None = None) -> Path:
    """The profile's adapter merged into its base model and converted for CTranslate2: from the
    cache when it is current, else built now (and older conversions removed)."""
    key = conversion_key(profile, scale)
    folder = profile.path / ENGINES_FOLDER
    target = folder / f"ct2-{key[:16]}"
    if is_built(target):
        return target
    _remove_leftovers(folder)

    def build(new: Path) -> None:
        loaded = resolve_model(profile.info.base_model, device="cpu", dtype="float32")
        check_base_matches(profile, loaded)
        apply_adapter(loaded, profile, merge=True, scale=scale)  # this adapter version, whatever adapt does meanwhile
        convert_loaded(loaded, new, STORAGE_QUANTIZATION)

    try:
        build_cached(target, build, {"profile": profile.name, "adapter": profile.info.adapter, "key": key,
                                     "base_model": profile.info.base_model, "adapter_scale": scale})
    except ModelError as error:
        raise ProfileError(f"profile '{profile.name}': {error}") from None
    for entry in folder.iterdir():
        if entry.name.startswith("ct2-") and entry != target:
            remove_path(entry)  # an older adapter's conversion (a run that loaded it holds it in memory)
    return target


def _remove_leftovers(folder: Path) -> None:
    """Hidden build folders of runs that died halfway (killed, power lost)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        pid = staging_pid(entry.name.removesuffix(".transformers"))
        if pid is not None and is_leftover(entry, pid):
            remove_path(entry)


class CT2Switcher:
    """:class:`~asr_adapt.profiles.personal.AdapterSwitcher` for the ct2 engine: ``use(name)``
    puts profile ``name``'s conversion in place of the model ``live`` decodes with (converting
    it first if needed), ``use(None)`` the base model's, kept loaded."""

    def __init__(self, loaded: LoadedModel) -> None:
        if "profile" in loaded.info:
            raise ProfileError("give CT2Switcher the base model, not one with an adapter merged in")
        self.loaded = loaded
        self.base_name = loaded.name
        self.base_model = loaded.model
        self.active: str | None = None

    def check(self, name: str) -> Profile:
        """Open profile ``name`` and check that it fits this base model and engine."""
        profile = Profile.open(name)
        require_adapter(profile)
        if profile.info.base_model != self.base_name:
            raise ProfileError(f"profile '{name}' was made on base model '{profile.info.base_model}', "
                               f"not '{self.base_name}'")
        check_ct2_family(profile)
        check_base_matches(profile, self.loaded)
        return profile

    def use(self, name: str | None, scale: float | None = None) -> Profile | None:
        """Decode with profile ``name`` (None: the base model) from the next step on."""
        check_adapter_scale(scale)
        if name is None:
            self._set(None, self.base_model)
            return None
        profile = self.check(name)
        model = self.base_model if profile.adapter_dir is None else CT2WhisperModel(
            profile_ct2_folder(profile, scale), self.loaded.placement, threads=self.base_model.threads)
        self._set(profile, model, scale)
        return profile

    def _set(self, profile: Profile | None, model: CT2WhisperModel, scale: float | None = None) -> None:
        self.loaded.model = model
        self.loaded.name = self.base_name
        for key in ("profile", "adapter", "short_windows", "adapter_scale"):
            self.loaded.info.pop(key, None)
        self.active = profile.name if profile else None
        if profile is not None:
            _mark(self.loaded, profile, scale)


def switcher_for(loaded: LoadedModel) -> AdapterSwitcher | CT2Switcher:
    """What switches profiles on ``loaded`` (a base model) while ``live`` runs, for its engine."""
    return CT2Switcher(loaded) if loaded.engine.runtime == "ct2" else AdapterSwitcher(loaded)


__all__ = ["CT2Switcher", "apply_profile", "load_profile_on", "profile_ct2_folder", "switcher_for"]
