"""Taking a profile to other runtimes: its adapter merged into a plain transformers model
folder, converted for CTranslate2 / faster-whisper, or as a bare PEFT adapter with a card.

Each export is built in a hidden folder beside the one asked for and renamed into place when
complete, so a failure (a full disk, Ctrl-C) never leaves a half-written folder where the
user looks; an existing folder is replaced only with ``force``, and only once the new one is
complete. (The ``.tar.gz`` archive that moves a profile between asr-adapt installations is
:mod:`asr_adapt.profiles.archive`.)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from asr_adapt.models.whisper.ct2_build import convert_transformers_folder, save_transformers_folder
from asr_adapt.profiles.info import ProfileError
from asr_adapt.profiles.personal import load_profile_model
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import install, oserror_text, random_tag, remove_path

#: What ``profiles export --format`` writes besides the archive.
FORMATS = ("merged", "ct2", "peft", "vllm")
#: Layers vLLM's Whisper takes LoRA on (it packs q/k/v into qkv_proj and the cross-attention's
#: k/v into kv_proj itself, from these names: its ``packed_modules_mapping``).
VLLM_LORA_LAYERS = frozenset({"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"})
#: CTranslate2 weight types an export may ask for.
QUANTIZATIONS = ("int8", "int8_float32", "float16", "float32")


def export_for_runtime(name: str, output: str | Path, fmt: str, force: bool = False,
                       quantization: str = "int8") -> Path:
    """Write profile ``name`` as ``fmt`` (see :data:`FORMATS`) into the folder ``output``.

    ``merged``: the adapter folded into its base model, saved as a transformers folder (model,
    processor, generation config) that ``from_pretrained`` and ``transformers.pipeline`` load
    without asr-adapt. ``ct2``: that folder converted by CTranslate2's own converter at
    ``quantization``, with the tokenizer and feature-extractor files faster-whisper reads
    (Whisper profiles only). ``peft``: the adapter as PEFT saved it, with a README.md card.
    """
    if fmt not in FORMATS:
        raise ProfileError(f"unknown export format {fmt!r}; choose one of: archive, {', '.join(FORMATS)}")
    if quantization not in QUANTIZATIONS:
        raise ProfileError(f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    output = Path(output).expanduser()
    if output.exists() and not force:
        raise ProfileError(f"{output} exists; choose a new folder, or pass --force to replace it")
    if output.exists() and not output.is_dir():
        raise ProfileError(f"{output} is a file; give a folder to export into")
    profile = Profile.open(name)
    if fmt in ("ct2", "vllm") and profile.info.backend != "whisper":
        runtime = "CTranslate2" if fmt == "ct2" else "vLLM's LoRA support"
        raise ProfileError(f"profile '{name}' is a {profile.info.backend} (CTC) profile; {runtime} takes Whisper "
                           "only: export it with --format merged or peft")
    if profile.adapter_dir is None:
        raise ProfileError(f"profile '{name}' has no adapter to export; run: asr-adapt adapt {name}")
    writers: dict[str, Callable[[Path], None]] = {
        "merged": lambda folder: _write_merged(profile, folder),
        "ct2": lambda folder: _write_ct2(profile, folder, quantization),
        "peft": lambda folder: _write_peft(profile, folder),
        "vllm": lambda folder: _write_vllm(profile, folder),
    }
    return _build_in_place(output, writers[fmt], force)


def _build_in_place(output: Path, write: Callable[[Path], None], force: bool) -> Path:
    """Fill a hidden sibling of ``output`` with ``write``, then move it into place as a
    profile is installed (with ``force``, swapped with the old folder, which is deleted)."""
    staging = output.parent / f".{output.name}.export-{os.getpid()}-{random_tag()}"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        write(staging)
        install(staging, output, force)
    except OSError as error:
        raise ProfileError(f"exporting to {output} failed ({oserror_text(error)}); nothing was written "
                           "there") from error
    finally:
        if staging.exists():
            remove_path(staging)
    return output


def _write_merged(profile: Profile, folder: Path) -> None:
    loaded, _ = load_profile_model(profile.name, device="cpu", dtype="float32", merge=True)
    save_transformers_folder(loaded, folder)
    _write_card(profile, folder, "merged")


def _write_ct2(profile: Profile, folder: Path, quantization: str) -> None:
    merged = folder.parent / f"{folder.name}.merged"
    try:
        merged.mkdir()
        _write_merged(profile, merged)
        # The converter writes into a folder of its own making: the staging folder's child.
        target = folder / "model"
        convert_transformers_folder(merged, target, quantization)
        for entry in target.iterdir():
            os.rename(entry, folder / entry.name)
        target.rmdir()
    finally:
        remove_path(merged)
    _write_card(profile, folder, "ct2", quantization=quantization)


def _write_peft(profile: Profile, folder: Path) -> None:
    for source in sorted(profile.adapter_dir.iterdir()):
        if source.is_file() and source.name != "README.md":
            shutil.copyfile(source, folder / source.name)
    _write_card(profile, folder, "peft")


def vllm_layout_problems(adapter_folder: Path, model) -> list[str]:
    """What keeps vLLM's Whisper from loading this PEFT adapter on ``model`` (the base model,
    transformers): LoRA on a layer vLLM does not adapt, or on a module the base model lacks,
    or shapes that do not fit the layer. Empty when the layout is right."""
    from safetensors.torch import load_file

    problems = []
    for key, tensor in load_file(str(adapter_folder / "adapter_model.safetensors")).items():
        path, _, kind = key.removeprefix("base_model.model.").partition(".lora_")
        if path.rsplit(".", 1)[-1] not in VLLM_LORA_LAYERS:
            problems.append(f"{path}: vLLM's Whisper takes no LoRA on this layer")
            continue
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            problems.append(f"{path}: no such layer in the base model")
            continue
        rank = tensor.shape[0] if kind.startswith("A") else tensor.shape[1]
        expected = (rank, layer.in_features) if kind.startswith("A") else (layer.out_features, rank)
        if tuple(tensor.shape) != expected:
            problems.append(f"{key}: shape {tuple(tensor.shape)}, the layer needs {expected}")
    return problems


def _write_vllm(profile: Profile, folder: Path) -> None:
    from asr_adapt.models.bundled import ALIASES, BUNDLED
    from asr_adapt.models.loading import resolve_model

    _write_peft(profile, folder)
    loaded = resolve_model(profile.info.base_model, device="cpu", dtype="float32")
    problems = vllm_layout_problems(folder, loaded.model)
    if problems:
        raise ProfileError(f"profile '{profile.name}' cannot go to vLLM: {problems[0]}"
                           + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    bundled = BUNDLED.get(ALIASES.get(profile.info.base_model, profile.info.base_model))
    base = bundled.hub_id if bundled is not None else profile.info.base_model
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base  # vLLM and PEFT read the base by this name
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    _write_card(profile, folder, "vllm", vllm_base=base, rank=int(config.get("r", 8)))


_HOW_TO_LOAD = {
    "merged": ('```python\nfrom transformers import pipeline\n\nasr = pipeline("automatic-speech-recognition", '
               'model="{folder}")\nprint(asr("speech.wav")["text"])\n```'),
    "ct2": ('```python\nfrom faster_whisper import WhisperModel\n\nmodel = WhisperModel("{folder}", '
            'compute_type="{quantization}")\nsegments, _ = model.transcribe("speech.wav")\n'
            'print(" ".join(s.text for s in segments))\n```'),
    "vllm": ('Not run here: this export was checked against the base model (layer names and shapes) but not '
             'served, since vLLM needs a CUDA GPU and its own install.\n\n```bash\nvllm serve {vllm_base} '
             '--enable-lora --max-lora-rank {max_rank} --lora-modules {name}=/path/to/{folder}\n```\n\n'
             '```python\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="http://localhost:8000/v1", '
             'api_key="EMPTY")\nwith open("speech.wav", "rb") as audio:\n    print(client.audio.transcriptions.'
             'create(model="{name}", file=audio).text)\n```'),
    "peft": ('```python\nfrom peft import PeftModel\nfrom transformers import WhisperForConditionalGeneration\n\n'
             'base = WhisperForConditionalGeneration.from_pretrained("BASE")  # the base model below, as '
             'transformers weights\nmodel = PeftModel.from_pretrained(base, "{folder}")\n```'),
}


def _write_card(profile: Profile, folder: Path, fmt: str, quantization: str = "", vllm_base: str = "",
                rank: int = 8) -> None:
    """README.md: what the export is, what it was trained on and how well, how to load it."""
    info = profile.info
    metrics = info.metrics or {}

    def percent(key: str) -> str:
        value = metrics.get(key)
        return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "not measured"
    lines = [
        f"# asr-adapt profile '{info.name}' ({fmt})", "",
        f"A personal adapter made by asr-adapt for {'a group' if info.kind == 'group' else 'one speaker'}, "
        f"exported as {fmt}{f' ({quantization})' if quantization else ''}.", "",
        f"- base model: `{info.base_model}` (weights sha256 {str(info.base_weights_sha256 or 'not recorded')[:16]})",
        f"- adapter version: `{info.adapter}`",
        f"- enrollment: {metrics.get('train_utterances', '?')} utterances, {metrics.get('train_minutes', '?')} min",
        f"- held-out WER before -> after: {percent('heldout_wer_before')} -> {percent('heldout_wer_after')}",
        f"- generic WER before -> after: {percent('generic_wer_before')} -> {percent('generic_wer_after')}",
        "", "## How to load it", "",
        _HOW_TO_LOAD[fmt].format(folder=folder.name if fmt not in ("peft", "vllm") else "THIS_FOLDER",
                                 quantization=quantization or "int8", vllm_base=vllm_base, name=info.name,
                                 max_rank=max(8, 1 << (rank - 1).bit_length())), "",
        "", "<!-- settings: " + json.dumps(info.settings, default=str)[:2000].replace("--", "- -") + " -->", "",
    ]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


__all__ = ["FORMATS", "QUANTIZATIONS", "export_for_runtime"]
