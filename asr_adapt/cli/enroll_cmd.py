"""``asr-adapt enroll NAME``: record (or import) a speaker's enrollment, then adapt."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_adapt.cli.common import (
    add_model_arguments, add_training_arguments, domain_settings, print_adapt_report, print_input_devices,
    self_train_settings,
    training_settings,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enroll", help="enroll a speaker or group: record prompts or import recordings, then adapt",
        description="Enroll NAME from the microphone (read prompts aloud; resumable) or, with --from, "
                    "from existing recordings: a folder of audio + .txt, a Kaldi data dir or a JSONL "
                    "manifest. Several speakers make a group profile. Then train the adapter.")
    parser.add_argument("name", metavar="NAME", help="profile name (letters, digits, . _ -)")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR|MANIFEST",
                        help="enroll from these recordings instead of the microphone")
    parser.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    parser.add_argument("--add", action="store_true",
                        help="with --from: add the recordings to an existing profile (without --add or --force, "
                             "an existing profile is asked about, or refused when there is no terminal)")
    parser.add_argument("--no-train", action="store_true", help="only store the enrollment; adapt later")
    parser.add_argument("--base-profile", metavar="GROUP",
                        help="start the adapter from this group profile's (same base model): a few utterances "
                             "then go further than from scratch")
    mic = parser.add_argument_group("microphone")
    mic.add_argument("--prompts", type=Path, help="one sentence per line (default: samples/prompts.txt)")
    mic.add_argument("--minutes", type=float, default=5.0, help="suggested minutes of speech (default: 5)")
    mic.add_argument("--input-device", help="microphone to use: an index or part of a name (see --list-devices)")
    mic.add_argument("--list-devices", action="store_true", help="list the audio inputs and exit")
    add_model_arguments(parser)
    add_training_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from asr_adapt.profiles.info import validate_profile_name

    if args.list_devices:
        return print_input_devices("enroll from recordings with --from DIR")

    validate_profile_name(args.name)
    if args.add and args.force:
        from asr_adapt.profiles.info import ProfileError

        raise ProfileError("--add keeps the profile and --force replaces it: give one of them")
    lora, options = training_settings(args)  # bad flags fail before anything is written
    domain, unlabeled, unlabeled_options = domain_settings(args)
    self_train = self_train_settings(args)
    from asr_adapt.profiles.info import profiles_root

    fresh = args.force or not (profiles_root() / args.name).is_dir()
    if domain is not None and domain.enabled and not unlabeled and not args.no_train and fresh:
        # A new profile has no kept audio yet: say so before recording or importing anything.
        from asr_adapt.adapt.options import TrainingError

        raise TrainingError(f"domain confusion needs the user's unlabeled audio and a new profile has none: "
                            f"pass --unlabeled PATH, or enroll first and later run asr-adapt live --profile "
                            f"{args.name} --keep-audio, then asr-adapt adapt {args.name} --domain-confusion")
    if self_train is not None and not unlabeled and not args.no_train and fresh:
        from asr_adapt.adapt.options import TrainingError

        raise TrainingError(f"self-training needs the user's unlabeled audio and a new profile has none: "
                            f"pass --unlabeled PATH, or enroll first and later run asr-adapt live --profile "
                            f"{args.name} --keep-audio, then asr-adapt adapt {args.name} --self-train")
    if args.base_profile is not None:  # checked before anything is recorded or replaced
        from asr_adapt.profiles.stacking import open_base_profile

        open_base_profile(args.base_profile, args.model, None, args.name)
    if args.source is not None:
        profile = _import(args)
        if profile is None:
            return 1
    else:
        from asr_adapt.profiles.enrollment import check_suggested_minutes, enroll_from_microphone
        from asr_adapt.ui.terminal_enroll import terminal_ui

        check_suggested_minutes(args.minutes)  # a bad --minutes is named before the missing terminal
        profile = enroll_from_microphone(args.name, base_model=args.model, prompts=args.prompts,
                                         suggested_minutes=args.minutes, input_device=args.input_device,
                                         force=args.force, ui=terminal_ui())
    if args.base_profile is not None:
        from asr_adapt.profiles.stacking import use_base_profile

        use_base_profile(profile, args.base_profile)
    if args.no_train:
        print(f"enrollment stored in {profile.path}; train with: asr-adapt adapt {profile.name}", file=sys.stderr)
        return 0
    from asr_adapt.profiles.adaptation import adapt_profile

    report = adapt_profile(profile, lora, options, device=args.device, progress=sys.stderr.isatty(),
                           domain=domain, unlabeled=unlabeled, unlabeled_options=unlabeled_options,
                           plot=args.plot, self_train=self_train)
    print_adapt_report(report, sys.stderr)
    return 0 if report.saved else 1


def _import(args):
    """Enroll from recordings; returns the profile, or None when the user cancelled."""
    from asr_adapt.data.manifest import summarize
    from asr_adapt.profiles.from_recordings import create_profile, load_enrollment
    from asr_adapt.profiles.profile import Profile

    utterances = load_enrollment(args.source)
    action = _existing_profile_action(args)
    if action == "cancel":
        print(f"cancelled; profile '{args.name}' is unchanged", file=sys.stderr)
        return None
    if action == "add":
        profile = Profile.open(args.name)
        _check_same_model(args, profile)
        count = profile.import_enrollment(utterances)
    else:  # the recordings are checked and copied before the profile is created (or replaced)
        profile = create_profile(args.name, args.model, utterances, force=args.force, base_profile=args.base_profile)
        count = len(utterances)
    print(f"enrolled {count} utterances into '{profile.name}': {summarize(profile.enrollment_utterances())}",
          file=sys.stderr)
    return profile


def _existing_profile_action(args) -> str:
    """What to do with the named profile: "create" (new, or --force), "add" or "cancel".

    An existing profile is never replaced silently: --force replaces, --add adds, and in a
    terminal the user is asked; without a terminal (scripts, CI) it is an error.
    """
    from asr_adapt.profiles.profile import Profile
    from asr_adapt.profiles.info import ProfileError, profiles_root

    if args.force or not (profiles_root() / args.name).is_dir():
        return "create"
    if args.add:
        return "add"
    if not sys.stdin.isatty():
        raise ProfileError(f"profile '{args.name}' exists; use --force to replace it or --add to add "
                           "these recordings to it")
    profile = Profile.open(args.name)
    existing = profile.enrollment_utterances()
    minutes = sum(u.duration or 0.0 for u in existing) / 60
    adapter = "with an adapter" if profile.adapter_dir is not None else "no adapter yet"
    question = (f"profile '{args.name}' exists ({len(existing)} utterances, {minutes:.1f} min, {adapter}). "
                "[a]dd these recordings to it, [r]eplace it, or [c]ancel? ")
    while True:
        try:
            answer = input(question).strip().lower()
        except EOFError:
            return "cancel"
        if answer in ("a", "add"):
            return "add"
        if answer in ("r", "replace"):
            args.force = True
            return "create"
        if answer in ("", "c", "cancel", "n", "no", "q"):
            return "cancel"


def _check_same_model(args, profile) -> None:
    """Recordings added to a profile train its own base model; a different --model is refused."""
    from asr_adapt.profiles.info import ProfileError

    from asr_adapt.models.bundled import DEFAULT_MODEL

    if args.model not in (DEFAULT_MODEL, profile.info.base_model):
        raise ProfileError(f"profile '{profile.name}' is built on {profile.info.base_model}, not {args.model}; "
                           f"drop --model to add to it, or use --force to start afresh")
    args.model = profile.info.base_model
