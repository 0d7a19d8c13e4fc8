"""A base model with a profile's adapter on top: what ``--profile NAME`` loads."""

from __future__ import annotations

from .models import LoadedModel, resolve_model
from .profiles import Profile, ProfileError


def check_base_matches(profile: Profile, loaded: LoadedModel) -> None:
    """Refuse an adapter trained on other base weights: its deltas would be meaningless."""
    info = profile.info
    expected, actual = info.base_weights_sha256, loaded.weights_sha256
    if expected and actual and expected != actual:
        raise ProfileError(f"profile '{profile.name}' was adapted on other weights of '{info.base_model}' "
                           f"(sha256 {expected[:12]}, now {actual[:12]}); enroll again with this model")
    if info.backend and info.backend != loaded.backend:
        raise ProfileError(f"profile '{profile.name}' is for a {info.backend} model, not {loaded.backend}")


def require_adapter(profile: Profile) -> None:
    """Refuse a profile that has no adapter yet (checked before any slow model load)."""
    if profile.adapter_dir is None:
        raise ProfileError(f"profile '{profile.name}' has no adapter yet; run: asr-adapt adapt {profile.name}")


def load_profile_model(name: str, model: str | None = None, device: str = "auto", dtype: str = "auto",
                       merge: bool = True) -> tuple[LoadedModel, Profile]:
    """Load the profile's base model and apply its adapter.

    ``model`` may repeat the base model's name; any other model is refused, since an
    adapter only fits the weights it was trained on. With ``merge`` the LoRA deltas are
    folded into the weights (no per-step adapter cost at inference).
    """
    profile = Profile.open(name)
    info = profile.info
    if model is not None and model != info.base_model:
        raise ProfileError(f"profile '{name}' was made on base model '{info.base_model}', not '{model}'; "
                           f"drop --model or use --model {info.base_model}")
    require_adapter(profile)
    loaded = resolve_model(info.base_model, device=device, dtype=dtype)
    check_base_matches(profile, loaded)
    apply_adapter(loaded, profile, merge=merge)
    return loaded, profile


def apply_adapter(loaded: LoadedModel, profile: Profile, merge: bool = True) -> LoadedModel:
    """Put ``profile``'s adapter onto ``loaded`` in place (the plain PEFT loading path)."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(loaded.model, str(profile.adapter_dir))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ProfileError(f"the adapter of profile '{profile.name}' cannot be loaded ({str(error).splitlines()[0][:160]}); "
                           "adapt it again") from None
    loaded.model = peft_model.merge_and_unload() if merge else peft_model
    loaded.model.eval()
    loaded.name = f"{loaded.name}+{profile.name}"
    loaded.info["profile"] = profile.name
    loaded.info["adapter"] = str(profile.adapter_dir)
    return loaded
