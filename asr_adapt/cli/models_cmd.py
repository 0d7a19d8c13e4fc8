"""``asr-adapt models``: list bundled models, or prepare (convert) one ahead of time."""

from __future__ import annotations

from asr_adapt.cli.common import add_model_arguments, load_model


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list or prepare models")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="bundled models and whether they are installed").set_defaults(run=run_list)
    prepare = actions.add_parser("prepare", help="convert and cache a model now, and describe it")
    add_model_arguments(prepare)
    prepare.set_defaults(run=run_prepare)
    parser.set_defaults(run=run_list)


def run_list(args) -> int:
    from asr_adapt.models.bundled import DEFAULT_MODEL, list_models
    from asr_adapt.models.loading import cache_dir

    for entry in list_models():
        mark = "installed" if entry["installed"] else f"not installed: {entry['install']}"
        default = " (default)" if entry["name"] == DEFAULT_MODEL else ""
        print(f"{entry['name']}{default}\t{entry['description']}\t[{mark}]")
    print(f"also accepted: a transformers folder, a CTranslate2 folder, or a hub id; cache: {cache_dir()}")
    return 0


def run_prepare(args) -> int:
    loaded = load_model(args)
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"{loaded.name}: {loaded.backend}, {params / 1e6:.1f} M parameters, from {loaded.path} "
          f"on {loaded.placement}; weights sha256 {loaded.weights_sha256 or 'n/a'}")
    return 0
