"""What a request's ``model`` names: a profile (its adapter on its base model), a bundled base
model, or a model the operator allowed; and which of those a caller may see.

Anything else, paths included, is "not found", with the same answer as a profile the caller's
key may not use, so that nobody learns which names exist."""

from __future__ import annotations

from dataclasses import dataclass

from asr_adapt.models.bundled import ALIASES, BUNDLED, DEFAULT_MODEL
from asr_adapt.profiles.info import ProfileError, is_profile_name
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import list_profiles
from asr_adapt.server.errors import ApiError, model_not_found
from asr_adapt.server.keys import Caller
from asr_adapt.server.options import ServeOptions

#: OpenAI's model name, which many programs send whatever the server: the default model.
OPENAI_NAME = "whisper-1"


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``model``: what the client called it, the base model to load (a bundled
    name, or the path or hub id the operator or the profile gives), and the profile."""

    name: str
    base: str
    profile: str | None = None


def listed_base_models(options: ServeOptions) -> dict[str, str]:
    """The base models ``/v1/models`` lists (installed bundled ones, the operator's), and what each loads."""
    models = {name: name for name, bundled in BUNDLED.items() if bundled.available()}
    models.update(dict(options.allowed_models))
    return models


def base_models(options: ServeOptions) -> dict[str, str]:
    """Base model names a request may give (the listed ones and their short names), and what each loads."""
    models = listed_base_models(options)
    for alias, target in ((OPENAI_NAME, DEFAULT_MODEL), *ALIASES.items()):
        if target in BUNDLED and target in models and alias not in models:
            models[alias] = target
    return models


def canonical_base(base: str) -> str:
    """One name per base model (``tiny.en`` and ``whisper-tiny.en`` share one copy)."""
    return ALIASES.get(base, base)


def resolve(name: str, caller: Caller, options: ServeOptions) -> ModelRef:
    """The model ``name`` names for ``caller``; ApiError 404 for anything else."""
    bases = base_models(options)
    if name in bases:
        return ModelRef(name, canonical_base(bases[name]))
    if not is_profile_name(name) or not caller.may_use(name):
        raise model_not_found(name)
    try:
        profile = Profile.open(name)
    except ProfileError:  # its message lists the profiles there are: not for this caller
        raise model_not_found(name) from None
    if profile.adapter_dir is None and profile.kept_nothing is None:
        raise ApiError(400, f"profile {name!r} has no adapter yet; adapt it first", "model_not_ready", param="model")
    return ModelRef(name, canonical_base(profile.info.base_model), profile=name)


def visible_models(caller: Caller, options: ServeOptions) -> list[dict]:
    """``/v1/models``' entries: the base models, then the usable profiles ``caller`` may use."""
    entries = [{"id": name, "object": "model", "created": 0, "owned_by": "asr-adapt"}
               for name in listed_base_models(options)]
    for info in list_profiles():
        usable = info.damaged is None and (info.adapter or info.metrics.get("kept_nothing"))
        if usable and caller.may_use(info.name) and info.name not in {e["id"] for e in entries}:
            entries.append({"id": info.name, "object": "model", "created": 0, "owned_by": "profile",
                            "base_model": info.base_model if "/" not in info.base_model else "local"})
    return entries


__all__ = ["ModelRef", "OPENAI_NAME", "base_models", "canonical_base", "resolve", "visible_models"]
