"""Optimizers from the ``optim`` config, with a learning-rate multiplier for the head.

``optim.official_param_repeats`` reproduces the backbone group of the official DeepLab-v2 trainers
(AdaptSegNet, ADVENT, DACS, FDA). Their generator walks every sub-module of conv1, bn1 and
layer1..layer4 and yields that module's parameters, recursively. So a parameter appears once for
each module on the path from its top-level block down to its owner: ``conv1.weight`` once,
``layer1.0.conv1.weight`` 3 times, ``layer1.0.downsample.0.weight`` 4 times. Frozen BatchNorm
parameters are skipped, and the classifier's parameters appear once. SGD then updates a parameter
once per appearance in every step.

segshift lists each parameter once, with a repeat count, and :class:`RepeatSGD` applies the
repeats one after another with PyTorch 0.4's arithmetic. A group that lists a parameter several
times does not give the same result on current PyTorch:

- it warns that duplicates will become an error;
- the default on CUDA is ``foreach``, which batches the duplicates together;
- on the very first step, the for-loop gives each repeat a fresh momentum buffer;
- gradient clipping counts the gradient once per copy;
- the AMP grad scaler unscales the gradient once per copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from segshift.errors import ConfigError


def official_repeat_counts(encoder: nn.Module) -> dict[str, int]:
    """How often the official ``get_1x_lr_params_NOscale`` lists each parameter of ``encoder``.

    The count is the number of modules, from the encoder's child block (``layer1``) down to the
    parameter's owner, that contain the parameter. For torchvision-style names that is the
    number of dots in the name: 1 for ``conv1.weight``, 3 for ``layer1.0.conv1.weight``.
    Parameters held by the encoder itself (outside every child) count once. ``requires_grad``
    is not looked at here; :func:`param_groups` leaves frozen parameters out.
    """
    counts: dict[int, int] = {}
    for block in encoder.children():
        for module in block.modules():
            for param in module.parameters():
                counts[id(param)] = counts.get(id(param), 0) + 1
    return {name: counts.get(id(p), 1) for name, p in encoder.named_parameters()}


def param_groups(
    model: nn.Module,
    lr: float,
    head_lr_mult: float,
    official_repeats: bool = False,
    extra_heads: tuple[nn.Module, ...] = (),
) -> list[dict[str, Any]]:
    """Backbone (``model.encoder``) at ``lr``, everything else at ``lr * head_lr_mult``.

    ``extra_heads``: a method's own heads on the model's features (a projection head, CCT's
    auxiliary decoders) join the head group.

    With ``official_repeats`` the backbone group also gets ``repeats``: one int per parameter,
    from :func:`official_repeat_counts`. Only :class:`RepeatSGD` reads it, and
    :func:`build_optimizer` picks that class when a group has it.
    """
    encoder = getattr(model, "encoder", None)
    if official_repeats and encoder is None:
        raise ConfigError(
            "optim.official_param_repeats needs a model with an .encoder (the backbone)"
        )
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) in encoder_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    head += [p for extra in extra_heads for p in extra.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": backbone, "lr": lr, "name": "backbone"},
        {"params": head, "lr": lr * head_lr_mult, "name": "head"},
    ]
    if official_repeats:
        counts = official_repeat_counts(encoder)
        by_id = {id(p): counts[name] for name, p in encoder.named_parameters()}
        groups[0]["repeats"] = [by_id[id(p)] for p in backbone]
    return [g for g in groups if g["params"]]


class RepeatSGD(torch.optim.SGD):
    """SGD that updates each parameter ``repeats`` times per step, one update after another.

    A group may carry ``repeats``: one positive int per parameter, defaulting to 1. Without it
    this is ``torch.optim.SGD``. It reproduces PyTorch 0.4's SGD on a group that lists a
    parameter k times. Each repeat r = 1..k uses

    - ``d_r = g + wd * (p_0 + ... + p_{r-1})``, where p_i is the parameter after i repeats;
    - the momentum buffer ``b = d_r`` on the parameter's first update ever, otherwise
      ``b = momentum * b + (1 - dampening) * d_r``;
    - the update ``p -= lr * b``, or ``p -= lr * (d_r + momentum * b)`` with Nesterov.

    The weight-decay sum is there because PyTorch up to 0.4 added ``wd * p`` into ``p.grad`` in
    place, so the decay terms pile up over the repeats. That is the PyTorch of AdaptSegNet and of
    ADVENT's pinned 0.4.1. ``p.grad`` itself is left untouched here. With
    ``accumulate_decay=False``, each repeat uses ``d_r = g + wd * p_{r-1}``, and the step equals
    k plain ``torch.optim.SGD`` steps on the same gradient. The repeats live in the param groups
    and are kept as built across :meth:`load_state_dict`. The momentum buffers are saved under
    the usual key.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        accumulate_decay: bool = True,
    ) -> None:
        self.accumulate_decay = accumulate_decay
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            foreach=False,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        if len(set(map(id, params))) != len(params):
            raise ValueError("RepeatSGD: list each parameter once and use repeats instead")
        repeats = list(param_group.get("repeats", [1] * len(params)))
        if len(repeats) != len(params) or any(not isinstance(k, int) or k < 1 for k in repeats):
            raise ValueError("repeats must hold one positive int per parameter of its group")
        super().add_param_group({**param_group, "params": params, "repeats": repeats})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        repeats = [group["repeats"] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, kept in zip(self.param_groups, repeats, strict=True):
            group["repeats"] = kept

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for param, repeats in zip(group["params"], group["repeats"], strict=True):
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("RepeatSGD does not support sparse gradients")
                grad = -param.grad if group["maximize"] else param.grad
                decayed = grad.clone() if wd and self.accumulate_decay else grad
                state = self.state[param]
                for _ in range(repeats):
                    if not wd:
                        d_p = grad
                    elif self.accumulate_decay:
                        d_p = decayed.add_(param, alpha=wd)
                    else:
                        d_p = grad.add(param, alpha=wd)
                    if momentum:
                        buf = state.get("momentum_buffer")
                        if buf is None:
                            buf = state["momentum_buffer"] = d_p.detach().clone()
                        else:
                            buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
                        d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                    param.add_(d_p, alpha=-lr)
        return loss


def build_optimizer(cfg: Any, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW/Adam over ``groups`` from an OptimConfig.

    Groups that carry ``repeats`` (``optim.official_param_repeats``) get :class:`RepeatSGD`.
    Such groups with any optimizer other than SGD are a ConfigError.
    """
    name = cfg.name.lower()
    repeated = any("repeats" in g for g in groups)
    if repeated and name != "sgd":
        raise ConfigError(
            f"optim.official_param_repeats=true reproduces the official DeepLab-v2 SGD; it "
            f"needs optim.name=sgd, not '{cfg.name}'"
        )
    if name == "sgd":
        cls = RepeatSGD if repeated else torch.optim.SGD
        return cls(
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


def segmenter_optimizer(
    model: nn.Module, optim_cfg: Any, extra_heads: tuple[nn.Module, ...] = ()
) -> torch.optim.Optimizer:
    """The ``optim`` config's optimizer over a segmentation model: backbone at ``lr``, head (and
    the method's ``extra_heads``) at ``lr * head_lr_mult``, with ``official_param_repeats`` (what
    every method's student uses)."""
    groups = param_groups(
        model,
        optim_cfg.lr,
        optim_cfg.head_lr_mult,
        optim_cfg.official_param_repeats,
        extra_heads,
    )
    return build_optimizer(optim_cfg, groups)
