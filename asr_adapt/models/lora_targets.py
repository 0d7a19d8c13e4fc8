"""The layer roles LoRA may adapt, named as Whisper names them, and each family's own names.

Importing this module loads nothing heavy: LoRA settings are validated (and the CLI's
``--help`` built) without torch. A backend maps the roles onto its module names in
:meth:`asr_adapt.models.base.Backend.lora_target_regex`.
"""

from __future__ import annotations

#: Linear layers of a Whisper block that LoRA may adapt (attention projections, feed-forward).
WHISPER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
#: wav2vec2-family names of the feed-forward layers (fc1 and fc2 there); LoRA accepts them too.
CTC_ONLY_TARGETS = ("intermediate_dense", "output_dense")
#: Every name LoRA settings accept.
KNOWN_TARGETS = WHISPER_TARGETS + CTC_ONLY_TARGETS
#: Where adapters go: the encoder (acoustics), the decoder (words), or both.
PLACES = ("encoder", "decoder", "both")
