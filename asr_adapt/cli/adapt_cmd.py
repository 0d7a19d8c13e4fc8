"""``asr-adapt adapt NAME``: (re)train a profile's adapter on its enrollment."""

from __future__ import annotations

import sys

from asr_adapt.cli.common import (
    add_training_arguments, domain_settings, print_adapt_report, self_train_settings, training_settings,
)
from asr_adapt.core.device import DEVICE_CHOICES


def register(subparsers) -> None:
    parser = subparsers.add_parser("adapt", help="train a profile's adapter on its enrollment",
                                   description="Fit LoRA adapters to the profile's enrolled speech and save "
                                               "them in the profile (atomically: the old adapter stays until "
                                               "the new one is complete). --domain-confusion also uses the "
                                               "user's unlabeled audio (kept by live --keep-audio, or "
                                               "--unlabeled PATH).")
    parser.add_argument("name", metavar="NAME", help="profile name")
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES))
    stacking = parser.add_mutually_exclusive_group()
    stacking.add_argument("--base-profile", metavar="GROUP",
                          help="from now on, start this profile's adapter from that group profile's")
    stacking.add_argument("--no-base-profile", action="store_true",
                          help="from now on, train this profile's adapter from scratch")
    add_training_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from asr_adapt.profiles.adaptation import adapt_profile
    from asr_adapt.profiles.profile import Profile

    lora, options = training_settings(args)
    domain, unlabeled, unlabeled_options = domain_settings(args)
    self_train = self_train_settings(args)
    profile = Profile.open(args.name)
    if args.base_profile is not None or args.no_base_profile:
        from asr_adapt.profiles.stacking import use_base_profile

        use_base_profile(profile, args.base_profile)
    report = adapt_profile(profile, lora, options, device=args.device, progress=sys.stderr.isatty(),
                           domain=domain, unlabeled=unlabeled, unlabeled_options=unlabeled_options,
                           plot=args.plot, self_train=self_train)
    print_adapt_report(report, sys.stderr)
    return 0 if report.saved else 1
