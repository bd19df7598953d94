"""ReCo: regional contrast (Liu et al., "Bootstrapping Semantic Segmentation with Regional
Contrast", ICLR 2022), on top of ClassMix with an EMA teacher (lorenmt/reco ``train_semisup.py``,
``module_list.py``; docs/METHODS.md, "ReCo").

Per step, with labeled images x_l (B_l,3,H,W), labels y_l (B_l,H,W) and unlabeled images u
(B,3,H,W)::

    y_u, c_u   = argmax / max softmax teacher(u)           resized to H x W, no grad
    u, y_u, c_u <- random rescale + crop back to H x W     (``scale_range``; VOC 0.5-1.5)
    M          = ClassMix(y_u)  (floor(n/2) classes of image i pasted on image i+1 mod B)
    u', y', c' = mix(M, u, roll(u)) ...; jitter, blur, flip  (the same geometry for y', c')
    L_sup      = CE(student(jitter/blur(x_l)), y_l)         mean over valid pixels
    w_b        = #(c'_b >= 0.97) / #(y'_b valid)            one weight per unlabeled image
    L_u        = mean over pixels with CE > 0 of w_b * CE(student(u'), y')
    L          = L_sup + L_u + reco_weight * L_reco

L_reco, on r = head(feat) (256-d, at the features' resolution h x w; head = 3x3 conv, BN, ReLU,
1x1 conv, no dropout), labels and masks downsampled with nearest (labeled: valid pixels;
unlabeled: c' >= weak threshold 0.7), p = the student's softmax (no grad):

    proto_c    = mean of r over the valid pixels of class c       (classes present: c_1..c_n)
    queries_c  = valid pixels of class c with p_c < 0.97          (hard queries)
    for each class i with queries: 256 anchors drawn with replacement from queries_i;
        per anchor 512 negatives: a class j != i drawn with P(j) = softmax_j(cos(proto_i,
        proto_j) / 0.5), then a uniform pixel of class j; keys = [proto_i; negatives] (no grad);
        l_i = CE(cos(anchor, keys) / 0.5, 0)
    L_reco     = sum_i l_i / n     (0 when n <= 1; n counts classes without hard queries too)

The student sees the labeled and the mixed batch in two passes (BatchNorm statistics per batch,
as official); the head runs on each pass's ``model(x, return_feat=True)["feat"]`` and the
student's logits are resized to the features' size (bilinear, ``model.align_corners``) for p.
``labeled_augment`` (official: true) applies the same jitter and blur to the labeled batch, as
ReCo's labeled loader does (its flip is the labeled stream's ``hflip``).

EMA teacher: theta_T <- a_t theta_T + (1 - a_t) theta_S, a_t = min(1 - 1/(t+1), 0.99). The
official code evaluates (and saves) the EMA model, so ``eval_model()`` is the teacher. Every
random draw comes from ``step_generator``/``step_seed``.

Defaults follow the paper and ``train_semisup.py``. Deviations from the official code, each with
a parameter giving the official behaviour (the recipes set them):

- ``teacher_train_mode`` (official: true, ``ema.model.train()``): the teacher pseudo-labels with
  the unlabeled batch's BatchNorm statistics and its running statistics follow its own forward
  passes. Default: eval mode, as segshift's policy: with two unlabeled images per step (the
  Cityscapes recipe) batch statistics are noisy, and the evaluated teacher then uses the same
  statistics for pseudo-labels as for evaluation.
- ``ema_parameters_only`` (official: true): default averages BatchNorm buffers too.
- ``include_ignore`` (official: true, -1 of padded pseudo-labels is a ClassMix candidate):
  default leaves the ignore value out.
- ``classmix_half``: ``floor`` (official ``generate_class_mask``: ``len // 2`` classes, so an
  image with one class pastes nothing; drawn here as the classes left out of a uniform ceil(n/2)
  draw of ``class_mix_masks``); ``ceil`` is ClassMix's own rule (Olsson et al.).

Not reproduced: the official in-step transforms go through PIL, so images are re-quantised to
8 bits and confidences to 1/255 (effective thresholds 248/255 and 179/255); here they stay float
(padding reflects the image where the pad is smaller than the image, else replicates). The
negatives of a query are drawn class by class there and pixel by pixel here (the same
distribution). The head reads the model's ``feat`` (smp DeepLabV3+: the fused 256-d decoder
map), where ReCo's representation head reads the 304-d concatenation beside its classifier.
Crop padding of the unlabeled stream (``valid``) is ignored and has confidence 0.

Example config::

    method: {name: reco, params: {strong_threshold: 0.97, weak_threshold: 0.7, temperature: 0.5}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment, step_generator, step_seed, strong_augment
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.mixing import MIX_MASKS, class_mix_masks, mix, mix_masks
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.pseudo_label import pseudo_label
from segshift.methods.common.representation import projection_head
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS

# step_generator / step_seed salts: one independent random stream per draw site
GEOMETRY_SALT, MIX_SALT, AUGMENT_SALT, LABELED_AUGMENT_SALT, SAMPLE_SALT = 1, 2, 3, 4, 5


@dataclass
class RecoParams:
    """ReCo hyperparameters; defaults from the paper / ``train_semisup.py`` arguments."""

    labeled: Labeled = field(default_factory=Labeled)
    alpha: float = 0.99  # EMA decay, with the 1 - 1/(t+1) warm-up
    strong_threshold: float = 0.97  # delta_s: hard queries (p < it), unsupervised weight
    weak_threshold: float = 0.7  # delta_w: unlabeled pixels that take part in the contrast
    temperature: float = 0.5
    num_queries: int = 256  # anchors per class and step
    num_negatives: int = 512  # negative keys per anchor
    dim: int = 256  # representation head width (``output_dim``)
    reco_weight: float = 1.0  # 0 gives the ClassMix baseline (``--apply_reco`` off)
    mix_mask: str = "class"  # class (README: --apply_aug classmix) | cut (cutmix)
    classmix_half: str = "floor"  # floor (official) | ceil (ClassMix paper)
    include_ignore: bool = False  # official: true
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])  # VOC: [0.5, 1.5]
    hflip: bool = True  # flip the mixed images (p 0.5), as batch_transform
    labeled_augment: bool = True  # the official labeled loader jitters and blurs as well
    augment: StrongAugment = field(default_factory=StrongAugment)  # jitter 0.25 p .8, blur p .5
    ema_parameters_only: bool = False  # official: true
    teacher_train_mode: bool = False  # official: true


def hard_query_mask(
    label: torch.Tensor, prob: torch.Tensor, cls: int, threshold: float
) -> torch.Tensor:
    """(N,) bool: pixels labeled ``cls`` (``label`` (N,), excluded ones < 0) whose probability of
    ``cls`` (``prob`` (N,C)) is below ``threshold``."""
    return (label == cls) & (prob[:, cls] < threshold)


def negative_class_probs(protos: torch.Tensor, i: int, temperature: float) -> torch.Tensor:
    """(n-1,) sampling probabilities of the other classes j != i (in order) as negatives of class
    i: softmax_j(cos(proto_i, proto_j) / temperature), from (n, D) prototypes."""
    others = torch.cat([protos[:i], protos[i + 1 :]])
    cos = F.cosine_similarity(protos[i : i + 1], others, dim=1)
    return torch.softmax(cos / temperature, dim=0)


def negative_indices(
    probs: torch.Tensor,
    i: int,
    counts: torch.Tensor,
    shape: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """(Q, K) indices into the pixels of all present classes, grouped by class (``counts`` (n,)
    pixels each): per slot a class j != i drawn from ``probs`` (n-1,), then a uniform pixel of j."""
    drawn = torch.multinomial(probs.cpu(), shape[0] * shape[1], True, generator=generator)
    drawn = drawn + (drawn >= i).long()  # index among all present classes
    offset = (torch.rand(drawn.shape, generator=generator) * counts[drawn]).long()
    starts = torch.cumsum(counts, 0) - counts
    return (starts[drawn] + offset.minimum(counts[drawn] - 1)).view(shape)


def reco_loss(
    feats: torch.Tensor,
    label: torch.Tensor,
    prob: torch.Tensor,
    generator: torch.Generator,
    *,
    strong_threshold: float = 0.97,
    temperature: float = 0.5,
    num_queries: int = 256,
    num_negatives: int = 512,
) -> torch.Tensor:
    """The ReCo loss of (N, D) pixel features with (N,) labels (< 0: not taking part) and (N, C)
    student probabilities (see the module docstring). Zero, with a graph, for <= 1 class."""
    zero = feats.sum() * 0.0
    classes = torch.unique(label[label >= 0]).tolist()
    if len(classes) <= 1:
        return zero
    members = [label == c for c in classes]
    protos = torch.stack([feats[m].mean(0) for m in members]).detach()  # keys: no gradient
    pool = torch.cat([feats[m] for m in members]).detach()  # negatives, grouped by class
    counts = torch.tensor([int(m.sum()) for m in members])
    # candidate keys = [prototypes; pixels], normalised once, then gathered per query
    keys = F.normalize(torch.cat([protos, pool]), dim=1)
    loss = zero
    for i, cls in enumerate(classes):
        hard = feats[hard_query_mask(label, prob, cls, strong_threshold)]
        if len(hard) == 0:
            continue  # every pixel of the class is easy; it still counts in the mean
        drawn = torch.randint(len(hard), (num_queries,), generator=generator)
        anchors = F.normalize(hard[drawn.to(hard.device)], dim=1)
        with torch.no_grad():
            probs = negative_class_probs(protos, i, temperature)
            negatives = negative_indices(probs, i, counts, (num_queries, num_negatives), generator)
            index = torch.cat([torch.full((num_queries, 1), i), negatives + len(classes)], dim=1)
        drawn_keys = keys[index.to(keys.device)]  # (Q, 1 + K, D): the positive, then negatives
        logits = torch.einsum("qd,qkd->qk", anchors, drawn_keys) / temperature
        target = torch.zeros(num_queries, dtype=torch.long, device=logits.device)
        loss = loss + F.cross_entropy(logits, target)  # the positive (prototype) is key 0
    return loss / len(classes)


def image_weights(
    label: torch.Tensor, confidence: torch.Tensor, threshold: float, ignore: int = 255
) -> torch.Tensor:
    """(B,) official per-image weight: #(confidence >= threshold) / #(valid label) of each image."""
    confident = (confidence >= threshold).flatten(1).sum(1)
    return confident / (label != ignore).flatten(1).sum(1).clamp(min=1)


def unsupervised_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    confidence: torch.Tensor,
    threshold: float,
    ignore_index: int = 255,
    align_corners: bool = False,
) -> torch.Tensor:
    """Mean, over the pixels whose CE is positive, of w_b * CE ((B,C,h,w) logits, (B,H,W) labels)."""
    logits = resize_logits(logits, tuple(label.shape[-2:]), align_corners)
    ce = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="none")
    weighted = image_weights(label, confidence, threshold, ignore_index)[:, None, None] * ce
    positive = ce > 0
    return weighted[positive].mean() if positive.any() else weighted.sum() * 0.0


def rescale_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    confidence: torch.Tensor,
    ratio: float,
    generator: torch.Generator,
    ignore: int = 255,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One unlabeled sample ((3,H,W), (H,W), (H,W)) rescaled by ``ratio`` (image bilinear, label
    and confidence nearest), padded (image reflected, label ignored, confidence 0) and randomly
    cropped back to H x W, as the official ``batch_transform``."""
    height, width = image.shape[-2:]
    size = (max(1, int(height * ratio)), max(1, int(width * ratio)))
    image = F.interpolate(image[None], size, mode="bilinear", align_corners=False, antialias=True)
    label = F.interpolate(label[None, None].float(), size, mode="nearest")[0, 0].long()
    confidence = F.interpolate(confidence[None, None], size, mode="nearest")[0, 0]
    pad_h, pad_w = max(height - size[0], 0), max(width - size[1], 0)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < size[0] and pad_w < size[1] else "replicate"
        image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
        label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore)
        confidence = F.pad(confidence, (0, pad_w, 0, pad_h), value=0.0)
    top = int(torch.randint(label.shape[0] - height + 1, (1,), generator=generator))
    left = int(torch.randint(label.shape[1] - width + 1, (1,), generator=generator))
    crop = (slice(top, top + height), slice(left, left + width))
    return image[0][(slice(None), *crop)], label[crop], confidence[crop]


@METHODS.register("reco")
class Reco(Method):
    """Student + representation head + EMA teacher; ClassMix consistency and regional contrast."""

    Params = RecoParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.check_choices(mix_mask=MIX_MASKS, classmix_half=("floor", "ceil"))
        self.streams = semi_streams(self.params.labeled)
        self.model = build_model(cfg.model, num_classes)
        self.head = projection_head(self.model.feat_channels, self.params.dim, dropout=0.0)
        self.teacher = make_teacher(self.model)
        self.train()

    def train(self, mode: bool = True) -> Reco:
        super().train(mode)
        if not self.params.teacher_train_mode:
            self.teacher.eval()  # segshift's policy: the teacher predicts with running statistics
        return self

    @torch.no_grad()
    def unlabeled_views(
        self, unlabeled: dict[str, Any], step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pseudo-label, rescale, mix and augment the unlabeled batch: image, label, confidence."""
        params, seed, ignore = self.params, self.cfg.seed, self.ignore_index
        image = unlabeled["image"]
        pseudo = pseudo_label(
            self.teacher(image)["out"],
            size=tuple(image.shape[-2:]),
            weighting="confidence",
            align_corners=self.model.align_corners,
        )
        label, conf = pseudo.label, pseudo.confidence
        if "valid" in unlabeled:  # crop padding of the unlabeled stream: no target, weight 0
            valid = unlabeled["valid"].to(label.device)
            label, conf = label.masked_fill(~valid, ignore), conf.masked_fill(~valid, 0.0)
        geometry = step_generator(seed, step, GEOMETRY_SALT)
        if tuple(params.scale_range) != (1.0, 1.0):
            low, high = params.scale_range
            ratios = torch.empty(len(image)).uniform_(low, high, generator=geometry).tolist()
            views = [
                rescale_crop(*v, r, geometry, ignore) for *v, r in zip(image, label, conf, ratios)
            ]
            image, label, conf = (torch.stack(part) for part in zip(*views))
        mask = self.mix_mask(label, step_generator(seed, step, MIX_SALT))
        image, label, conf = (mix(mask, t, t.roll(-1, 0)) for t in (image, label, conf))
        image = strong_augment(image, step_seed(seed, step, AUGMENT_SALT), params.augment)
        if params.hflip:
            flip = (torch.rand(len(image), generator=geometry) < 0.5).to(image.device)
            image = torch.where(flip[:, None, None, None], image.flip(-1), image)
            label = torch.where(flip[:, None, None], label.flip(-1), label)
            conf = torch.where(flip[:, None, None], conf.flip(-1), conf)
        return image, label, conf

    def mix_mask(self, label: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,H,W) mask, 1 where image i keeps its own pixels (the rest comes from image i+1)."""
        kw = {"ignore_index": self.ignore_index, "include_ignore": self.params.include_ignore}
        if self.params.mix_mask != "class" or self.params.classmix_half == "ceil":
            return mix_masks(self.params.mix_mask, label, generator, **kw)
        # the classes left out of a uniform ceil(n/2) choice are a uniform floor(n/2) choice
        candidate = torch.ones_like(label, dtype=torch.bool)
        if not self.params.include_ignore:
            candidate = label != self.ignore_index
        return (1.0 - class_mix_masks(label, generator, **kw)) * candidate

    def pixels(
        self, rep: torch.Tensor, out: torch.Tensor, label: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flatten one batch at the representation's size: features (N,D), labels (N,) with -1
        outside ``mask`` (B,H,W) and on ignored pixels, and the student's probabilities (N,C)."""
        size = tuple(rep.shape[-2:])
        keep = mask & (label != self.ignore_index)
        small = F.interpolate(torch.where(keep, label, -1)[:, None].float(), size, mode="nearest")
        prob = torch.softmax(resize_logits(out.detach().float(), size, self.model.align_corners), 1)
        flat = rep.permute(0, 2, 3, 1).reshape(-1, rep.shape[1])
        return flat, small.long().flatten(), prob.permute(0, 2, 3, 1).reshape(-1, prob.shape[1])

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        params, align = self.params, self.model.align_corners
        labeled = labeled_batch(batch, params.labeled.streams)
        image_l, label_l = labeled["image"], labeled["label"]
        if params.labeled_augment:
            seed = step_seed(self.cfg.seed, step, LABELED_AUGMENT_SALT)
            image_l = strong_augment(image_l, seed, params.augment)
        image_u, label_u, conf_u = self.unlabeled_views(batch["unlabeled"], step)

        out_l = self.model(image_l, return_feat=True)  # two passes, as official: own BN batches
        out_u = self.model(image_u, return_feat=True)
        sup = supervised_loss(
            out_l["out"], label_l, params.labeled, self.ignore_index, align_corners=align
        )
        unsup = unsupervised_loss(
            out_u["out"], label_u, conf_u, params.strong_threshold, self.ignore_index, align
        )
        loss = sup + unsup
        every = torch.ones_like(label_l, dtype=torch.bool)  # labeled: all valid pixels
        parts_l = self.pixels(self.head(out_l["feat"]), out_l["out"], label_l, every)
        weak = conf_u >= params.weak_threshold
        parts_u = self.pixels(self.head(out_u["feat"]), out_u["out"], label_u, weak)
        feats, labels, probs = (torch.cat(p) for p in zip(parts_l, parts_u))
        contrast = reco_loss(
            feats,
            labels,
            probs,
            step_generator(self.cfg.seed, step, SAMPLE_SALT),
            strong_threshold=params.strong_threshold,
            temperature=params.temperature,
            num_queries=params.num_queries,
            num_negatives=params.num_negatives,
        )
        return {
            "loss": loss + params.reco_weight * contrast,
            "sup": sup.detach(),
            "unsup": unsup.detach(),
            "reco": contrast.detach(),
            "confident": (conf_u >= params.strong_threshold).float().mean(),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=(self.head,))}

    def after_step(self, step: int) -> None:
        ema_update(
            self.teacher,
            self.model,
            self.params.alpha,
            step,
            parameters_only=self.params.ema_parameters_only,
        )

    def eval_model(self) -> nn.Module:
        return self.teacher  # train_semisup.py evaluates and saves ema.model
