"""Where LoRA goes in a Whisper model: PEFT's ``target_modules`` pattern (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.lora_targets import WHISPER_TARGETS


def whisper_lora_regex(targets: Sequence[str], where: str) -> str:
    """A full-match pattern over Whisper's module names (PEFT ``target_modules``) for the
    layer roles ``targets`` in the encoder, the decoder or both (decoder: self- and
    cross-attention)."""
    wrong = [t for t in targets if t not in WHISPER_TARGETS]
    if wrong:
        raise OptionsError(f"LoRA targets {', '.join(wrong)} are wav2vec2 layer names; Whisper's feed-forward "
                           "layers are fc1 and fc2")
    # Without an enrollment to decide "auto" by (attach_lora called directly): both.
    sides = {"encoder": "encoder", "decoder": "decoder"}.get(where, "encoder|decoder")
    return rf"model\.({sides})\.layers\.\d+\.((self_attn|encoder_attn)\.)?({'|'.join(targets)})"
