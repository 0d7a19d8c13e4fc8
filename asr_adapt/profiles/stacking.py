"""Group to personal: a profile whose adapter starts from a group profile's.

A person often belongs to a group that already has a profile (an accent, a clinic, a team).
``asr-adapt enroll alice --from DIR --base-profile mandarin-adults`` records the group in
Alice's profile; her training then loads the group's adapter and trains it further on her
own speech (continued LoRA: one adapter, the group's placement and rank), so her profile
needs nothing of the group's at inference and exports like any other.
"""

from __future__ import annotations

from asr_adapt.profiles.info import ProfileError, validate_profile_name
from asr_adapt.profiles.profile import Profile


def open_base_profile(name: str, base_model: str, weights_sha256: str | None, for_profile: str) -> Profile:
    """The group profile ``name`` that profile ``for_profile`` on ``base_model`` starts from.

    Refused in one line (ProfileError): the profile itself, a profile that does not exist,
    one on another base model or other weights, or one without an adapter to start from."""
    validate_profile_name(name)
    if name == for_profile:
        raise ProfileError(f"profile '{for_profile}' cannot start from itself; name a group profile as --base-profile")
    group = Profile.open(name)
    info = group.info
    same_weights = not (info.base_weights_sha256 and weights_sha256) or info.base_weights_sha256 == weights_sha256
    if info.base_model != base_model or not same_weights:
        raise ProfileError(f"base profile '{name}' was made on '{info.base_model}'"
                           f"{'' if same_weights else ' (other weights)'}, not '{base_model}'; an adapter only fits "
                           f"the weights it was trained on: enroll with --model {info.base_model} or choose another "
                           "base profile")
    if group.adapter_dir is None:
        raise ProfileError(f"base profile '{name}' has no adapter to start from; adapt it first: asr-adapt adapt {name}")
    return group


def use_base_profile(profile: Profile, name: str | None) -> Profile | None:
    """Record in ``profile`` that its training starts from group profile ``name`` (checked as
    :func:`open_base_profile` does; None: start from fresh LoRA). Returns the group profile."""
    group = None
    if name is not None:
        group = open_base_profile(name, profile.info.base_model, profile.info.base_weights_sha256, profile.name)
    if profile.info.base_profile != name:
        profile.info.base_profile = name
        profile.save()
    return group


__all__ = ["open_base_profile", "use_base_profile"]
