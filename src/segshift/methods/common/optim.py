"""Optimizers from the ``optim`` config, with a learning-rate multiplier for the head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segshift.errors import ConfigError


def param_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """Backbone (``model.encoder``) at ``lr``, everything else at ``lr * head_lr_mult``."""
    encoder = getattr(model, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) in encoder_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    groups = [
        {"params": backbone, "lr": lr, "name": "backbone"},
        {"params": head, "lr": lr * head_lr_mult, "name": "head"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: Any, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW/Adam over ``groups`` from an OptimConfig."""
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer 'optim.name={cfg.name}' (known: sgd, adamw, adam)")
