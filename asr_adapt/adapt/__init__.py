"""Adaptation: LoRA placement, the training loop, domain confusion, self-training."""
