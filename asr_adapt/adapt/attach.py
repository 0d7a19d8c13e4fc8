"""Attaching LoRA adapters to a model through PEFT (which layers: the model's backend decides)."""

from __future__ import annotations

from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.models.registry import backend_of


def attach_lora(model, settings: LoraSettings):
    """Wrap ``model`` in a PEFT model whose only trainable weights are LoRA adapters."""
    from peft import LoraConfig, get_peft_model

    targets = backend_of(model).lora_target_regex(settings.targets, settings.where)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, bias="none")
    return get_peft_model(model, config)


def continue_lora(model, adapter_dir: str):
    """Load the PEFT adapter in ``adapter_dir`` onto ``model``, trainable, to train it further.

    Returns ``(peft_model, settings)``: its rank, alpha and dropout, read from its
    ``adapter_config.json``; the layers it adapts stay those it was made with (written
    there as a module pattern), whatever ``settings.where`` says."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    config = peft_model.peft_config["default"]
    settings = LoraSettings(rank=int(config.r), alpha=int(config.lora_alpha), dropout=float(config.lora_dropout))
    return peft_model, settings


def shrink_adapter(peft_model, share: float) -> None:
    """Scale every LoRA delta of ``peft_model`` to ``share`` of itself, in its weights (so
    that a saved adapter carries it): each ``lora_B`` matrix times ``share``."""
    import torch
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                for adapter in module.lora_B:
                    module.lora_B[adapter].weight.mul_(share)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


__all__ = ["attach_lora", "continue_lora", "count_parameters", "shrink_adapter"]
