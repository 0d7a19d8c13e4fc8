"""LoRA settings: one frozen dataclass, validated here (no torch needed: the CLI reads its
defaults for ``--help``). Attaching them to a model: :mod:`asr_adapt.adapt.attach`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.lora_targets import KNOWN_TARGETS, PLACES, WHISPER_TARGETS

#: ``where="auto"``: the encoder for one speaker, both halves for a group (measured, see
#: :attr:`LoraSettings.where`).
AUTO = "auto"


@dataclass(frozen=True)
class LoraSettings:
    """Where and how large the low-rank adapters are. Validated here, once."""

    rank: int = 16
    alpha: int = 32
    #: 0 by default: dropout on every adapted layer's input costs a quarter of the training
    #: step on CPU, and held-out early stopping already guards against overfitting.
    dropout: float = 0.0
    #: Adapt the encoder (acoustics: voice, accent, microphone), the decoder (words,
    #: spelling, phrasing), or both. CTC models have only an encoder ("both" = all of it).
    #: "auto" (the default) picks by the enrollment (:meth:`resolved`): the encoder alone for
    #: one speaker, both for a group. Measured with a beam of 5, 3 seeds (BENCHMARKS.md): the
    #: sample speaker reached 8.2% WER with the encoder alone vs 10.3% with both (86.0% vs
    #: 82.5% relative; its held-out slice agreed on every seed), while 4 adult speechocean762
    #: speakers scored on 20 others reached 27.2% with both vs 28.5% with the encoder alone.
    where: str = AUTO
    #: Attention projections and feed-forward layers, by Whisper's names (a CTC model's
    #: backend reads fc1/fc2 as its own intermediate_dense/output_dense).
    targets: tuple[str, ...] = WHISPER_TARGETS

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or not 1 <= self.rank <= 256:
            raise OptionsError(f"LoRA rank must be between 1 and 256, got {self.rank!r}")
        if not 0 < self.alpha <= 4096:
            raise OptionsError(f"LoRA alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise OptionsError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.where not in PLACES + (AUTO,):
            raise OptionsError(f"LoRA placement must be one of {', '.join(PLACES + (AUTO,))}, got {self.where!r}")
        unknown = [t for t in self.targets if t not in KNOWN_TARGETS]
        if unknown or not self.targets:
            raise OptionsError(f"LoRA targets must be among {', '.join(KNOWN_TARGETS)}, got {', '.join(unknown) or 'none'}")
        object.__setattr__(self, "targets", tuple(self.targets))

    def resolved(self, speakers: int) -> "LoraSettings":
        """These settings with "auto" decided for an enrollment of ``speakers`` voices: the
        encoder for one (a voice's trouble is acoustic, and a decoder adapter learns the
        enrollment's sentences instead), both halves for a group."""
        if self.where != AUTO:
            return self
        return replace(self, where="encoder" if speakers <= 1 else "both")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LoraSettings":
        fields = {k: data[k] for k in ("rank", "alpha", "dropout", "where", "targets") if k in data}
        if "targets" in fields:
            fields["targets"] = tuple(fields["targets"])
        return cls(**fields)
