"""Output-space adversarial pieces shared by AdaptSegNet, ADVENT and adv_cutmix.

Labels follow AdaptSegNet / ADVENT: **source = 0, target = 1**. The segmenter is trained to make
the discriminator call target outputs "source"; the discriminator learns to tell them apart.

Both updates fit the trainer's single backward (``methods/base.py``): the generator term is
computed with the discriminator frozen (its parameters get no gradient from it), and the
discriminator term on detached predictions (the segmenter gets no gradient from it). Because the
discriminator's parameters do not change between the two official updates, one backward on the
sum gives exactly the official gradients.

Example::

    g_loss, d_loss = adversarial_losses(disc, p_source, p_target, mode="vanilla")
    loss = seg_loss + 0.001 * g_loss + d_loss

:class:`ImagePool` is CycleGAN's history of generated images (``util/image_pool.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segshift.registry import MODELS

SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0
GAN_MODES = ("vanilla", "ls")


def gan_loss(logits: torch.Tensor, target: float, mode: str = "vanilla") -> torch.Tensor:
    """Discriminator logits (any shape) against a constant label.

    ``vanilla``: BCE-with-logits averaged over the cells; ``ls``: least squares (MSE on the raw
    output), AdaptSegNet's ``--gan LS`` and CycleGAN's default.
    """
    labels = torch.full_like(logits, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if mode == "ls":
        return F.mse_loss(logits.float(), labels.float())
    raise ValueError(f"GAN mode must be one of {GAN_MODES}, got {mode!r}")


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of the modules' parameters inside the block, then restore it."""
    params = [p for m in modules for p in m.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def adversarial_losses(
    discriminator: nn.Module,
    source_input: torch.Tensor,
    target_input: torch.Tensor,
    mode: str = "vanilla",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator term, discriminator term) for one discriminator.

    ``source_input`` / ``target_input``: what the discriminator sees, e.g. (B,C,H,W) softmax maps
    (AdaptSegNet) or self-information maps (ADVENT). Generator term: D(target) pushed to the
    source label, D frozen. Discriminator term: (D(source) -> 0) / 2 + (D(target) -> 1) / 2 on
    detached inputs.
    """
    with frozen(discriminator):
        g_loss = gan_loss(discriminator(target_input), SOURCE_LABEL, mode)
    d_source = gan_loss(discriminator(source_input.detach()), SOURCE_LABEL, mode)
    d_target = gan_loss(discriminator(target_input.detach()), TARGET_LABEL, mode)
    return g_loss, (d_source + d_target) / 2


def build_discriminator(in_channels: int, ndf: int = 64) -> nn.Module:
    """AdaptSegNet's fully convolutional output-space discriminator (``fc_discriminator``)."""
    return MODELS.build("fc_discriminator", in_channels=in_channels, ndf=ndf)


def discriminator_optimizer(
    parameters: Iterator[nn.Parameter], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99)
) -> torch.optim.Optimizer:
    """Adam(lr 1e-4, betas (0.9, 0.99)) as in AdaptSegNet and ADVENT; the trainer's poly schedule
    runs relative to this optimizer's own learning rate."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas)


class ImagePool(nn.Module):
    """CycleGAN's history of generated images (Shrivastava et al., 2017; ``util/image_pool.py``).

    Per image of a query: while fewer than ``size`` are stored, store it and return it; once
    full, with probability 0.5 return a random stored image and store the new one in its place,
    else return the new image. The discriminator thus also sees older generators' images.
    Coins and slots come from ``generator`` (a step-seeded one: exact resume). The stored images
    are buffers (float32, allocated at the first query), so checkpoints hold them; a method
    lists them in ``_ddp_params_and_buffers_to_ignore`` so DDP keeps one pool per process.
    ``size`` 0 returns the query unchanged.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._register_load_state_dict_pre_hook(self._take_stored_shape)

    def _take_stored_shape(self, state: dict[str, Any], prefix: str, *_: Any) -> None:
        stored = state.get(prefix + "images")
        if stored is not None and stored.shape != self.images.shape:
            self.images = torch.zeros(stored.shape, device=self.images.device)

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,C,H,W) new images (detached here) -> (B,C,H,W) images for the discriminator."""
        if self.size == 0:
            return images.detach()
        images = images.detach().float()
        if self.images.dim() != 4 or self.images.shape[1:] != images.shape[1:]:
            if int(self.count) > 0:
                raise ValueError(
                    f"the image pool holds {tuple(self.images.shape[1:])} images, got "
                    f"{tuple(images.shape[1:])}: its images must have one size (set crop_size)"
                )
            self.images = images.new_zeros((self.size, *images.shape[1:]))
        coins = torch.rand(len(images), generator=generator).tolist()
        slots = torch.randint(self.size, (len(images),), generator=generator).tolist()
        returned = []
        for image, coin, slot in zip(images, coins, slots):
            count = int(self.count)
            if count < self.size:
                self.images[count] = image
                self.count += 1
                returned.append(image)
            elif coin > 0.5:
                returned.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                returned.append(image)
        return torch.stack(returned)
