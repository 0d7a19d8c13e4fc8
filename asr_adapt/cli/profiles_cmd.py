"""``asr-adapt profiles``: list, show, remove, export and import speaker profiles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asr_adapt.profiles.archive import export_profile, import_profile
from asr_adapt.profiles.info import ProfileError, profiles_root, validate_profile_name
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import list_profiles, remove_profile


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``profiles list|show|remove|export|import`` to the CLI."""
    parser = subparsers.add_parser(
        "profiles", help="list, show, remove, export or import profiles",
        description="A profile holds one speaker's (or group's) enrollment recordings and "
                    "LoRA adapters. Profiles live in $ASR_ADAPT_HOME/profiles, or in the "
                    "user data folder when ASR_ADAPT_HOME is not set.")
    actions = parser.add_subparsers(dest="profiles_command", metavar="ACTION")
    parser.set_defaults(run=run_list)

    actions.add_parser("list", help="every profile, one a line (the default)") \
        .set_defaults(run=run_list)

    show = actions.add_parser("show", help="print a profile's settings, metrics and history")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(run=run_show)

    remove = actions.add_parser("remove", help="delete a profile with its recordings and adapters")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (needed when stdin is not a terminal)")
    remove.set_defaults(run=run_remove)

    export = actions.add_parser("export", help="write a profile to a .tar.gz archive, or for another runtime")
    export.add_argument("name", metavar="NAME")
    export.add_argument("-o", "--output", metavar="PATH",
                        help="archive: the file to write, or a folder to write NAME.tar.gz into (default: "
                             "NAME.tar.gz here); other formats: the folder to create (default: NAME-FORMAT)")
    export.add_argument("--format", choices=("archive", "merged", "ct2", "peft", "vllm"), default="archive",
                        help="archive: a .tar.gz for `profiles import` (default); merged: a plain transformers "
                             "model folder with the adapter folded in; ct2: that, converted for CTranslate2 / "
                             "faster-whisper; peft: the bare PEFT adapter with a model card; vllm: that adapter "
                             "checked against vLLM's Whisper LoRA layers, with the `vllm serve` command")
    export.add_argument("--quantization", choices=("int8", "int8_float32", "float16", "float32"), default="int8",
                        help="weights of a ct2 export (default: int8)")
    export.add_argument("--force", action="store_true", help="replace an existing export folder")
    export.add_argument("--no-audio", action="store_true",
                        help="archive: leave the enrollment recordings and transcripts out")
    export.set_defaults(run=run_export)

    importer = actions.add_parser("import", help="install a profile from an exported archive")
    importer.add_argument("archive", metavar="ARCHIVE")
    importer.add_argument("--name", metavar="NEW", help="install it under this name instead")
    importer.add_argument("--force", action="store_true",
                          help="replace an existing profile of the same name")
    importer.add_argument("--allow-model", action="store_true",
                          help="accept a profile whose base model is not bundled with asr-adapt (a hub id or a "
                               "local folder it names): that model is loaded when the profile is used")
    importer.set_defaults(run=run_import)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per profile: name, kind, base model, adapter, last update."""
    infos = list_profiles()
    if not infos:
        print(f"no profiles yet in {profiles_root()}; make one with "
              "`asr-adapt enroll NAME`")
        return 0
    for info in infos:
        if info.damaged:
            print(f"{info.name}\tDAMAGED: {info.damaged}")
            continue
        adapter = info.adapter.split("/")[-1] if info.adapter else "not trained"
        print(f"{info.name}\t{info.kind}\t{info.base_model}\tadapter {adapter}\t"
              f"updated {info.updated}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print profile.json, then the enrollment size and the adapter folder."""
    from asr_adapt.data.manifest import summarize

    profile = Profile.open(args.name)
    print(json.dumps(profile.info.to_dict(), indent=2, ensure_ascii=False))
    utterances = profile.enrollment_utterances()
    summary = summarize(utterances)
    print(f"enrollment: {summary.count} utterances, {summary.minutes:.1f} min "
          f"({profile.enrollment_dir})")
    if profile.adapter_dir:
        print(f"adapter: {profile.adapter_dir}")
    elif profile.kept_nothing:
        print(f"adapter: none kept ({profile.kept_nothing}); the profile reads with {profile.info.base_model} "
              f"as it is. Record more utterances and run: asr-adapt adapt {profile.name}")
    else:
        print(f"adapter: none yet; run: asr-adapt adapt {profile.name}")
    base = profile.info.settings.get("base_profile")
    if isinstance(base, dict) and base.get("name"):
        print(f"started from group profile: {base['name']} (adapter {base.get('adapter_version', '?')})")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Delete a profile after confirmation (or with --yes)."""
    name = validate_profile_name(args.name)
    folder = profiles_root() / name
    if not folder.is_dir():
        Profile.open(name)  # raises the "no profile" message with the known names
    if not args.yes:
        if not sys.stdin.isatty():
            raise ProfileError(f"not removing profile '{name}' without confirmation: "
                               "stdin is not a terminal; add --yes")
        try:
            answer = input(f"remove profile '{name}' with its recordings and adapters "
                           f"({folder})? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print(f"profile '{name}' kept")
            return 1
    remove_profile(name)
    print(f"removed profile '{name}'")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the profile to an archive, or as a folder for another runtime."""
    if args.format != "archive":
        from asr_adapt.profiles.exports import export_for_runtime

        output = Path(args.output) if args.output else Path(f"{args.name}-{args.format}")
        path = export_for_runtime(args.name, output, args.format, force=args.force, quantization=args.quantization)
        print(f"{path}: profile '{args.name}' as {args.format} (see {path / 'README.md'})")
        return 0
    output = Path(args.output) if args.output else Path(f"{args.name}.tar.gz")
    path = export_profile(args.name, output, include_audio=not args.no_audio)
    content = "without recordings" if args.no_audio else "with recordings"
    print(f"{path}: profile '{args.name}' ({content})")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Install a profile from an archive."""
    profile = import_profile(Path(args.archive), name=args.name, force=args.force, allow_model=args.allow_model)
    adapter = profile.adapter_dir.name if profile.adapter_dir else "no adapter"
    print(f"imported profile '{profile.name}' ({adapter}) into {profile.path}")
    return 0
