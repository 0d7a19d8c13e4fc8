"""A base model with a profile's adapter on top: what ``--profile NAME`` loads."""

from __future__ import annotations

from safetensors import SafetensorError

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.loading import resolve_model
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.info import ProfileError

#: What loading a damaged adapter folder raises (a truncated or empty safetensors file raises
#: safetensors' own error, which is none of the others).
ADAPTER_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def check_base_matches(profile: Profile, loaded: LoadedModel) -> None:
    """Refuse an adapter trained on other base weights: its deltas would be meaningless."""
    info = profile.info
    # The family first: a Whisper adapter on a wav2vec2 model (or the reverse) is the
    # clearest case, and says more than a weights hash would.
    if info.backend and info.backend != loaded.backend:
        raise ProfileError(f"profile '{profile.name}' holds an adapter for a {info.backend} model, but "
                           f"'{loaded.name}' is a {loaded.backend} model; adapters do not carry across model "
                           f"families: enroll again with this model")
    expected, actual = info.base_weights_sha256, loaded.weights_sha256
    if expected and actual and expected != actual:
        raise ProfileError(f"profile '{profile.name}' was adapted on other weights of '{info.base_model}' "
                           f"(sha256 {expected[:12]}, now {actual[:12]}); enroll again with this model")


def require_adapter(profile: Profile) -> str | None:
    """Refuse a profile that was never adapted (checked before any slow model load).

    A profile whose adaptation kept no adapter (none beat the base model) is usable: it
    reads with the base model as is. Returns the one line that says so, or None when the
    profile has an adapter."""
    if profile.adapter_dir is not None:
        return None
    reason = profile.kept_nothing
    if reason is None:
        raise ProfileError(f"profile '{profile.name}' has no adapter yet; run: asr-adapt adapt {profile.name}")
    return f"profile '{profile.name}' keeps no adapter ({reason}); using {profile.info.base_model} as it is"


def load_profile_model(name: str, model: str | None = None, device: str = "auto", dtype: str = "auto",
                       merge: bool = True, adapter_scale: float | None = None) -> tuple[LoadedModel, Profile]:
    """Load the profile's base model and apply its adapter.

    ``model`` may repeat the base model's name; any other model is refused, since an
    adapter only fits the weights it was trained on. With ``merge`` the LoRA deltas are
    folded into the weights (no per-step adapter cost at inference). ``adapter_scale``
    scales the adapter's deltas (see :func:`apply_adapter`).
    """
    check_adapter_scale(adapter_scale)
    profile = Profile.open(name)
    info = profile.info
    check_model_name(profile, model)
    require_adapter(profile)
    loaded = resolve_model(info.base_model, device=device, dtype=dtype)
    check_base_matches(profile, loaded)
    apply_adapter(loaded, profile, merge=merge, scale=adapter_scale)
    return loaded, profile


def check_model_name(profile: Profile, model: str | None) -> None:
    """``--model`` may repeat the profile's base model; any other is refused (an adapter fits
    only the weights it was trained on)."""
    base = profile.info.base_model
    if model is not None and model != base:
        raise ProfileError(f"profile '{profile.name}' was made on base model '{base}', not '{model}'; "
                           f"drop --model or use --model {base}")


#: Adapter scales accepted: 0 (the base model) to 2 (twice the deltas).
MAX_ADAPTER_SCALE = 2.0


def check_adapter_scale(scale: float | None) -> None:
    """Refuse an adapter scale outside 0-2 (OptionsError, one line)."""
    if scale is not None and not (isinstance(scale, (int, float)) and 0 <= scale <= MAX_ADAPTER_SCALE):
        raise OptionsError(f"adapter scale must be between 0 and {MAX_ADAPTER_SCALE:g}, got {scale!r}")


def apply_adapter(loaded: LoadedModel, profile: Profile, merge: bool = True, scale: float | None = None) -> LoadedModel:
    """Put ``profile``'s adapter onto ``loaded`` in place (the plain PEFT loading path); a
    profile that keeps no adapter leaves the base model as it is. ``scale`` (default 1)
    scales the adapter's deltas: less of the personal fit, less cost on other voices."""
    from peft import PeftModel

    if profile.adapter_dir is None:
        require_adapter(profile)  # never adapted: refused
        loaded.info.update(profile=profile.name, adapter=None, short_windows=False)
        return loaded
    try:
        peft_model = PeftModel.from_pretrained(loaded.model, str(profile.adapter_dir))
    except ADAPTER_LOAD_ERRORS as error:
        raise ProfileError(f"the adapter of profile '{profile.name}' cannot be loaded ({str(error).splitlines()[0][:160]}); "
                           "adapt it again") from None
    if scale is not None and scale != 1:
        from asr_adapt.adapt.attach import shrink_adapter  # PEFT's torch code: not loaded for --engine ct2 runs

        shrink_adapter(peft_model, scale)
        loaded.info["adapter_scale"] = scale
    loaded.model = peft_model.merge_and_unload() if merge else peft_model
    loaded.model.eval()
    loaded.name = f"{loaded.name}+{profile.name}"
    loaded.info["profile"] = profile.name
    loaded.info["adapter"] = str(profile.adapter_dir)
    loaded.info["short_windows"] = reads_best_in_short_windows(profile)
    return loaded


def reads_best_in_short_windows(profile: Profile) -> bool:
    """Whether the profile's adapter reads short encoder windows best: then live (and offline
    ``--encoder-window auto``) transcription gives it short windows, 4x cheaper steps on a
    CPU (see :mod:`asr_adapt.models.whisper.encoder_window`). That needs an adapter trained on short windows
    only, with LoRA in the decoder too. Measured on the sample voice (BENCHMARKS.md):

    - an adapter that saw 30 s windows too (half and half) gave 14.1% WER in short windows
      vs 11.7% in full ones;
    - an encoder-only adapter (one speaker's default placement since session 7), trained on
      short windows only, still reads best in the full window: live 12.9% vs 10.8%, offline
      beam 5 on 3 seeds 10.2% vs 8.2%. The unadapted decoder reads a short window's encoder
      states worse than the adapted encoder's 30 s ones.
    """
    settings = profile.info.settings
    share = (settings.get("training") or {}).get("short_window_share")
    where = (settings.get("lora") or {}).get("where", "both")
    return isinstance(share, (int, float)) and share >= 1.0 and where != "encoder"


class AdapterSwitcher:
    """Puts one profile's adapter after another onto a loaded base model, without reloading it.

    Each adapter is loaded with the plain PEFT path and merged into the weights (no LoRA
    cost per step). Before the first merge touches a layer, that layer's base weight is
    copied aside (to the CPU); switching restores those copies exactly, then merges the next
    adapter. So switching back and forth never accumulates rounding error (merge/unmerge in
    float16 would), and ``use(None)`` gives back the base model bit for bit.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        if "profile" in loaded.info:
            raise ProfileError("give AdapterSwitcher the base model, not one with an adapter merged in")
        self.loaded = loaded
        self.base_name = loaded.name
        self.active: str | None = None
        self._originals: dict[str, object] = {}

    def check(self, name: str) -> Profile:
        """Open profile ``name`` and check that its adapter fits this base model."""
        profile = Profile.open(name)
        require_adapter(profile)
        info = profile.info
        if info.base_model != self.base_name and not (info.base_weights_sha256 and self.loaded.weights_sha256):
            raise ProfileError(f"profile '{name}' was made on base model '{info.base_model}', "
                               f"not '{self.base_name}'")
        check_base_matches(profile, self.loaded)
        return profile

    def use(self, name: str | None, scale: float | None = None) -> Profile | None:
        """Make profile ``name``'s adapter the active one (``None``: the plain base model),
        its deltas times ``scale`` (default 1). On an error the previous state is kept when
        possible, else the base model."""
        check_adapter_scale(scale)
        if name is None:
            self._restore()
            self._set_active(None)
            return None
        profile = self.check(name)
        self._restore()
        self._set_active(None)
        self._merge(profile, scale)
        self._set_active(profile)
        return profile

    def _merge(self, profile: Profile, scale: float | None = None) -> None:
        from peft import PeftModel

        if profile.adapter_dir is None:
            return  # keeps no adapter: the base model reads for it
        model = self.loaded.model
        try:
            peft_model = PeftModel.from_pretrained(model, str(profile.adapter_dir))
        except ADAPTER_LOAD_ERRORS as error:
            _strip_lora(model)
            raise ProfileError(f"the adapter of profile '{profile.name}' cannot be loaded "
                               f"({str(error).splitlines()[0][:160]}); adapt it again") from None
        for path, module in peft_model.base_model.model.named_modules():
            base = getattr(module, "base_layer", None)
            if base is not None and path not in self._originals:
                self._originals[path] = base.weight.detach().to("cpu", copy=True)
        if scale is not None and scale != 1:
            from asr_adapt.adapt.attach import shrink_adapter

            shrink_adapter(peft_model, scale)
        self.loaded.model = peft_model.merge_and_unload()
        self.loaded.model.eval()

    def _restore(self) -> None:
        import torch

        modules = dict(self.loaded.model.named_modules())
        with torch.no_grad():
            for path, weight in self._originals.items():
                target = modules[path].weight
                target.copy_(weight.to(target.device, dtype=target.dtype))

    def _set_active(self, profile: Profile | None) -> None:
        self.active = profile.name if profile else None
        self.loaded.name = f"{self.base_name}+{profile.name}" if profile else self.base_name
        for key in ("profile", "adapter", "short_windows"):
            self.loaded.info.pop(key, None)
        if profile is not None:
            self.loaded.info["profile"] = profile.name
            self.loaded.info["adapter"] = str(profile.adapter_dir) if profile.adapter_dir else None
            self.loaded.info["short_windows"] = reads_best_in_short_windows(profile)


def _strip_lora(model) -> None:
    """Undo a half-finished adapter injection: put each LoRA layer's base layer back."""
    for path, module in list(model.named_modules()):
        base = getattr(module, "base_layer", None)
        if base is None or not path:
            continue
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, child, base)
