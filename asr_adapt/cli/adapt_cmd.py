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
    add_training_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from asr_adapt.profiles.adaptation import adapt_profile
    from asr_adapt.profiles.profile import Profile

    lora, options = training_settings(args)
    domain, unlabeled, unlabeled_options = domain_settings(args)
    self_train = self_train_settings(args)
    profile = Profile.open(args.name)
    report = adapt_profile(profile, lora, options, device=args.device, progress=sys.stderr.isatty(),
                           domain=domain, unlabeled=unlabeled, unlabeled_options=unlabeled_options,
                           plot=args.plot, self_train=self_train)
    print_adapt_report(report, sys.stderr)
    return 0 if report.saved else 1
