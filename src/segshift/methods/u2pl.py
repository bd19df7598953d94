"""U2PL: Semi-Supervised Semantic Segmentation Using Unreliable Pseudo-Labels (Wang et al., CVPR 2022).

An EMA teacher pseudo-labels the unlabeled batch; the reliable (low-entropy) pseudo-labels train
the student with CE, and the unreliable (high-entropy) pixels become negative keys of a pixel
contrast, kept in one memory bank per class. Per step, with labeled x_l (B_l,3,H,W), y_l (B_l,H,W)
and unlabeled x_u (B_u,3,H,W) of the same crop, t = step / train.iters::

    y_u           = argmax softmax(teacher_eval(x_u))            (B_u,H,W), logits resized to H x W
    x_u, y_u      = CutMix with probability 0.5: image i takes a box of half its area from image
                    (i+1) mod B_u (the official ``generate_unsup_data``)
    out, rep      = student(cat(x_l, x_u)), head(feat)           rep (B,256,h,w), B = B_l + B_u
    p_T, rep_T    = teacher pass on the same batch (train mode as official), EMA head on its feat
    E             = -sum_c p ln(p + 1e-10) of p_T's unlabeled part resized to H x W   (B_u,H,W)
    L_sup         = CE (or OHEM)(out_l, y_l) + 0.4 CE(aux_l, y_l) when the model returns "aux"
    q_t           = 100 - 20 (1 - t)          drop E >= percentile_{q_t}(E): 20% at t=0, none at t=1
    L_u           = (B_u H W / N_kept) * mean_{kept} CE(out_u, y_u)
                  = B_u H W * sum_kept CE / N_kept^2          (the official normaliser)
    a_t           = 20 (1 - t);  low = E <= percentile_{a_t}(E),  high = E >= percentile_{100-a_t}(E)
                    (labeled pixels: both = label valid); masks and labels go to h x w by nearest
    per class c   anchors   = student rep at low pixels of label c with p_T[c] > 0.3
                  positive  = mean teacher rep over the low pixels of label c
                  negatives = teacher rep pushed to bank c at "high" pixels where c ranks in
                              [3, 20) among the teacher's classes (unlabeled) or in the top 3 with
                              a label other than c (labeled), and p_T[c] < 1
                  L_c = CE([cos(a, positive); cos(a, 50 bank samples)] / 0.5, 0), 256 anchors
    L_contra      = sum_c L_c / #classes with low pixels (0 when fewer than 2)
    L             = L_sup + L_u + L_contra

Percentiles interpolate linearly (``numpy.percentile``). The banks (``MemoryBank``) start empty
and grow to ``queue_size`` keys per class (``queue_size_first`` for class 0; official 30,000 /
50,000), then drop their oldest keys, as the official ``dequeue_and_enqueue``; they are buffers,
so ``state_dict`` (and exact resume) holds the keys held, not the caps. Under DDP the new keys of
every process are gathered before they are pushed, as officially. After each
optimizer step the teacher (network and projection head) follows the student's parameters,
``theta_T <- a theta_T + (1-a) theta_S`` with a = min(1 - 1/(t+1), 0.99). The official code
evaluates the teacher (``validate(model_teacher, ...)`` after ``sup_only_epoch``), so
``eval_model()`` is the teacher.

Official schedule switches (epochs become steps): ``sup_only_iters`` (official VOC: one epoch of
supervised-only training; Cityscapes 0) and ``copy_iters`` (official: one epoch; the teacher is
re-copied from the student before every step of epoch ``sup_only_epoch``, so it equals the student
throughout it; the EMA warm-up then counts from ``sup_only_iters``). Defaults 0: EMA from step 0.

BatchNorm of the teacher (official): the EMA moves parameters only; the teacher's statistics come
from its own train-mode passes (the second pass above, and a pass on the labeled images during
the supervised-only phase). ``teacher_train_mode: false`` with ``ema_parameters_only: false``
gives segshift's policy instead (eval-mode teacher, EMA of the whole state).

Deviations from the official code (``Haochen-Wang409/U2PL``, ``train_semi.py`` and
``u2pl/utils/loss_helper.py``), each reachable by a parameter where cheap:

- ``official_negative_label`` (official: true). The official negative mask also requires the
  pixel's (pseudo-)label to be c, which empties the labeled negatives (their label must differ
  from c) and keeps, for unlabeled pixels, only those whose eval-mode pseudo-label is c while the
  train-mode teacher ranks c in [3, 20) (issues #27, #171). Default: the paper's rule (eqs. 14-16).
- ``official_class_index`` (official: true). The official loss loop takes the anchors and
  prototype of class k for the k-th class that has low-entropy pixels, but the negatives of that
  k-th class (issue #111). Default: anchors, prototype and negatives of the same class.
- ``official_ddp_scale`` (official: true). The official code all-reduces the contrastive loss in
  place (outside autograd) and divides by the world size, so its gradient is 1/W of the mean
  loss's. Default: the gradient of the mean loss (DDP's gradient average of the local losses).
- The CutMix box width is drawn in [W/2, W) (``cutmix_masks``), officially [W/2 + 1, W).
- Teacher probabilities and ranks at the projection's resolution: the official decoder predicts at
  that resolution; here the model's logits are resized to it when their sizes differ.
- The projection head is ``common.representation.projection_head`` on the model's "feat"
  (officially two 3x3 conv blocks on the 512-d concatenation inside the DeepLabV3+ decoder).
- Negatives, anchors and CutMix draw from ``step_generator`` (exact resume), not the global RNG.

Example config::

    method: {name: u2pl, params: {drop_percent: 80, low_entropy_threshold: 20}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.augment import step_generator
from segshift.methods.common.distributed import gather_rows
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.common.mixing import cutmix_masks, mix
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.pseudo_label import pseudo_label
from segshift.methods.common.representation import (
    MemoryBank,
    contrast_logits,
    projection_head,
)
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS

MIX_SALT = 1  # step_generator salts: one random stream per draw site
SAMPLE_SALT = 2


@dataclass
class U2plParams:
    """U2PL hyperparameters; defaults from the paper / the official ``config.yaml`` files."""

    labeled: Labeled = field(default_factory=Labeled)  # Cityscapes recipe: OHEM 0.7 / 100,000
    alpha: float = 0.99  # EMA decay (``ema_decay``) with the 1 - 1/(t+1) warm-up
    aux_weight: float = 0.4  # ``aux_loss.loss_weight``, used when the model returns "aux"
    cutmix_p: float = 0.5  # probability of CutMix for the whole unlabeled batch
    drop_percent: float = 80.0  # 100 - the share (%) of unreliable pixels dropped at t = 0
    unsup_weight: float = 1.0
    contra_weight: float = 1.0
    proj_dim: int = 256
    proj_dropout: float = 0.1
    num_queries: int = 256
    num_negatives: int = 50
    temperature: float = 0.5
    low_rank: int = 3
    high_rank: int = 20
    current_class_threshold: float = 0.3  # anchors: teacher probability of their class above it
    current_class_negative_threshold: float = 1.0  # negatives: teacher probability below it
    low_entropy_threshold: float = 20.0  # alpha_0 (%) of the entropy bands, decaying to 0
    queue_size: int = 30_000  # memory bank per class
    queue_size_first: int = 50_000  # class 0's bank (official: 50,000)
    sup_only_iters: int = 0  # official VOC: one epoch (sup_only_epoch 1); Cityscapes 0
    copy_iters: int = 0  # official: one epoch (teacher = student during epoch sup_only_epoch)
    ema_parameters_only: bool = True  # official: parameters only (BN statistics: see module doc)
    teacher_train_mode: bool = True  # official: the teacher's second pass in train mode
    official_negative_label: bool = False  # official: true (negatives must carry label c)
    official_class_index: bool = False  # official: true (anchors of the k-th class index)
    official_ddp_scale: bool = False  # official: true (contrastive gradient / world size)


def unreliable_percentile(step: int, iters: int, drop_percent: float = 80.0) -> float:
    """The entropy percentile above which pseudo-labels are dropped at ``step``:
    ``100 - (100 - drop_percent)(1 - step/iters)`` (80 at the start, 100 at the end)."""
    return 100.0 - (100.0 - drop_percent) * (1.0 - step / iters)


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``numpy.percentile(values, q)`` (linear interpolation) of a 1-D tensor, q in [0, 100]."""
    ordered = values.flatten().sort().values
    if len(ordered) == 0:
        return values.new_tensor(math.nan)
    position = min(max(q, 0.0), 100.0) / 100.0 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pixel_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum_c p ln(p + 1e-10) of (B,C,H,W) probabilities: (B,H,W), natural log, as official."""
    return -(probs * torch.log(probs + 1e-10)).sum(dim=1)


def unsupervised_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    entropy: torch.Tensor,
    percent: float,
    ignore_index: int = 255,
    align_corners: bool = False,
) -> torch.Tensor:
    """CE of (B,C,h,w) ``logits`` on (B,H,W) pseudo-labels without the pixels whose (B,H,W)
    teacher ``entropy`` reaches its ``percent``-th percentile, times B*H*W / #kept (official)."""
    valid = label != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    unreliable = valid & (entropy >= percentile(entropy[valid], percent))
    kept = label.masked_fill(unreliable, ignore_index)
    weight = kept.numel() / (kept != ignore_index).sum().clamp(min=1)
    return weight * cross_entropy(logits, kept, ignore_index, align_corners=align_corners)


def class_ranks(probs: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) rank of every class at every pixel, 0 = the most probable."""
    return probs.argsort(dim=1, descending=True).argsort(dim=1)


def negative_mask(
    cls: int,
    label: torch.Tensor,
    high: torch.Tensor,
    probs: torch.Tensor,
    ranks: torch.Tensor,
    num_labeled: int,
    params: U2plParams,
) -> torch.Tensor:
    """(B,h,w) bool: the pixels whose teacher features are negative keys of class ``cls``.

    ``label`` (B,h,w): ground truth for the first ``num_labeled`` images, pseudo-labels after;
    ``high`` (B,h,w): the unreliable band (labeled images: every valid pixel); ``probs``/``ranks``
    (B,C,h,w) the teacher's. Unlabeled: rank of cls in [low_rank, high_rank); labeled: rank below
    low_rank and label != cls.
    """
    rank = ranks[:, cls]
    is_labeled = torch.arange(label.shape[0], device=label.device).view(-1, 1, 1) < num_labeled
    band = torch.where(
        is_labeled,
        (rank < params.low_rank) & (label != cls),
        (rank >= params.low_rank) & (rank < params.high_rank),
    )
    mask = high & band & (probs[:, cls] < params.current_class_negative_threshold)
    if params.official_negative_label:
        mask &= label == cls
    return mask


def gather_keys(keys: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N,D) keys and (N,) class ids of every process (rank order), under DDP."""
    rows, _ = gather_rows(torch.cat([keys, classes[:, None].to(keys.dtype)], dim=1))
    return rows[:, :-1], rows[:, -1].long()


@METHODS.register("u2pl")
class U2pl(Method):
    """Student + EMA teacher; CE on reliable pseudo-labels, contrast against unreliable pixels."""

    Params = U2plParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        params = self.params
        self.streams = semi_streams(params.labeled)
        if not params.teacher_train_mode and params.ema_parameters_only:
            raise ConfigError(
                "method.params.teacher_train_mode: false needs ema_parameters_only: false (an "
                "eval-mode teacher whose buffers are never averaged keeps its first BN statistics)"
            )
        self.model = build_model(cfg.model, num_classes)
        self.head = projection_head(self.model.feat_channels, params.proj_dim, params.proj_dropout)
        self.teacher = make_teacher(self.model)
        self.teacher_head = make_teacher(self.head)
        sizes = [params.queue_size_first] + [params.queue_size] * (num_classes - 1)
        self.bank = MemoryBank(sizes, params.proj_dim)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        params, align = self.params, self.model.align_corners
        labeled = labeled_batch(batch, params.labeled.streams)
        image_l, label_l = labeled["image"], labeled["label"]
        image_u = batch["unlabeled"]["image"]
        if image_u.shape[1:] != image_l.shape[1:]:
            raise ConfigError(
                f"U2PL feeds labeled and unlabeled images in one batch, so their crops must match: "
                f"{tuple(image_l.shape[-2:])} vs {tuple(image_u.shape[-2:])}; give "
                "data.streams.unlabeled the labeled stream's crop_size"
            )
        if step < params.sup_only_iters:
            return self._supervised_only(image_l, label_l)
        size, n_l = tuple(label_l.shape[-2:]), len(image_l)

        with torch.no_grad():
            self.teacher.eval()
            label_u = pseudo_label(self.teacher(image_u)["out"], size=size, align_corners=align)
            label_u = label_u.label
            generator = step_generator(self.cfg.seed, step, MIX_SALT)
            if float(torch.rand((), generator=generator)) < params.cutmix_p:
                box = cutmix_masks(len(image_u), size, generator, device=image_u.device)
                image_u = mix(box, image_u.roll(-1, dims=0), image_u)  # box from image (i+1)
                label_u = mix(box, label_u.roll(-1, dims=0), label_u)

        images = torch.cat([image_l, image_u])
        out = self.model(images, return_feat=True)
        rep = self.head(out["feat"])
        sup = supervised_loss(
            out["out"][:n_l], label_l, params.labeled, self.ignore_index, align_corners=align
        )
        if "aux" in out:
            sup = sup + params.aux_weight * supervised_loss(
                out["aux"][:n_l], label_l, params.labeled, self.ignore_index, align_corners=align
            )

        with torch.no_grad():
            self.teacher.train(params.teacher_train_mode)
            self.teacher_head.train(params.teacher_train_mode)
            out_t = self.teacher(images, return_feat=True)
            rep_t = self.teacher_head(out_t["feat"])
            logits_u = resize_logits(out_t["out"][n_l:], size, align)
            entropy = pixel_entropy(torch.softmax(logits_u.float(), dim=1))
            probs_t = torch.softmax(resize_logits(out_t["out"], rep.shape[-2:], align), dim=1)

        iters = self.cfg.train.iters
        percent = unreliable_percentile(step, iters, params.drop_percent)
        unsup = unsupervised_loss(
            out["out"][n_l:], label_u, entropy, percent, self.ignore_index, align
        )
        alpha = params.low_entropy_threshold * (1.0 - step / iters)
        contra = self._contrastive(rep, rep_t, probs_t, label_l, label_u, entropy, alpha, step)
        loss = sup + params.unsup_weight * unsup + params.contra_weight * contra
        return {
            "loss": loss,
            "sup": sup.detach(),
            "unsup": unsup.detach(),
            "contra": contra.detach(),
            "bank_fill": torch.tensor(self.bank.fill()),
        }

    def _supervised_only(self, image: torch.Tensor, label: torch.Tensor) -> dict:
        """The official first ``sup_only_epoch``: labeled CE only; the train-mode teacher sees the
        labeled batch (its BN statistics move)."""
        align = self.model.align_corners
        out = self.model(image, return_feat=True)
        sup = supervised_loss(
            out["out"], label, self.params.labeled, self.ignore_index, align_corners=align
        )
        if "aux" in out:
            sup = sup + self.params.aux_weight * supervised_loss(
                out["aux"], label, self.params.labeled, self.ignore_index, align_corners=align
            )
        zero = self.head(out["feat"]).sum() * 0.0  # every parameter in the graph (DDP)
        if self.params.teacher_train_mode:
            with torch.no_grad():
                self.teacher.train()
                self.teacher_head.train()
                self.teacher_head(self.teacher(image, return_feat=True)["feat"])
        logged = zero.detach()
        return {"loss": sup + zero, "sup": sup.detach(), "unsup": logged, "contra": logged,
                "bank_fill": logged}  # fmt: skip

    def _contrastive(
        self,
        rep: torch.Tensor,
        rep_t: torch.Tensor,
        probs_t: torch.Tensor,
        label_l: torch.Tensor,
        label_u: torch.Tensor,
        entropy: torch.Tensor,
        alpha: float,
        step: int,
    ) -> torch.Tensor:
        """The contrastive term from student/teacher reps (B,D,h,w) and teacher probs (B,C,h,w);
        pushes this step's negative keys to the banks first (as official)."""
        params, n_l = self.params, len(label_l)
        valid_u = label_u != self.ignore_index
        values = entropy[valid_u]
        low_u = valid_u & (entropy <= percentile(values, alpha))
        high_u = valid_u & (entropy >= percentile(values, 100.0 - alpha))
        valid_l = label_l != self.ignore_index

        def small(x: torch.Tensor) -> torch.Tensor:  # nearest, to the representation's size
            return F.interpolate(x[:, None].float(), size=rep.shape[-2:], mode="nearest")[:, 0]

        label = small(torch.cat([label_l, label_u])).long()
        low = small(torch.cat([valid_l, low_u])).bool()
        high = small(torch.cat([valid_l, high_u])).bool()
        feats, feats_t = rep.permute(0, 2, 3, 1), rep_t.permute(0, 2, 3, 1)
        ranks = class_ranks(probs_t)

        anchors, prototypes, present, keys, key_classes = {}, {}, [], [], []
        for c in range(self.num_classes):
            low_c = low & (label == c)
            if low_c.any():
                present.append(c)
                anchors[c] = feats[low_c & (probs_t[:, c] > params.current_class_threshold)]
                prototypes[c] = feats_t[low_c].mean(dim=0)
            negatives = feats_t[negative_mask(c, label, high, probs_t, ranks, n_l, params)]
            keys.append(negatives)
            key_classes.append(torch.full((len(negatives),), c, device=rep.device))
        keys, key_classes = gather_keys(torch.cat(keys).float(), torch.cat(key_classes))
        for c in range(self.num_classes):
            self.bank.push(c, keys[key_classes == c])

        loss = rep.sum() * 0.0
        if len(present) <= 1:
            return loss
        generator = step_generator(self.cfg.seed, step, SAMPLE_SALT)
        for k, c in enumerate(present):
            a = k if params.official_class_index else c  # official: the k-th class's anchors
            queries, bank = anchors.get(a), self.bank.entries(c)
            if queries is None or len(queries) == 0 or len(bank) == 0:
                continue
            pick = torch.randint(len(queries), (params.num_queries,), generator=generator)
            drawn = torch.randint(
                len(bank), (params.num_queries * params.num_negatives,), generator=generator
            )
            negatives = bank[drawn.to(bank.device)].view(
                params.num_queries, params.num_negatives, -1
            )
            positive = prototypes[a].expand(params.num_queries, 1, -1)
            logits = contrast_logits(
                queries[pick.to(queries.device)],
                torch.cat([positive, negatives.to(positive.dtype)], dim=1),
                params.temperature,
            )
            target = torch.zeros(params.num_queries, dtype=torch.long, device=logits.device)
            loss = loss + F.cross_entropy(logits, target)
        loss = loss / len(present)
        if params.official_ddp_scale and dist.is_available() and dist.is_initialized():
            loss = loss / dist.get_world_size()
        return loss

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=(self.head,))}

    def after_step(self, step: int) -> None:
        params = self.params
        start = params.sup_only_iters
        copy = step < start + params.copy_iters  # official: teacher = student in that epoch
        alpha = 0.0 if copy else params.alpha
        for teacher, student in ((self.teacher, self.model), (self.teacher_head, self.head)):
            ema_update(
                teacher,
                student,
                alpha,
                max(step - start, 0),
                parameters_only=params.ema_parameters_only,
            )

    def eval_model(self) -> nn.Module:
        return self.teacher  # the official code validates the teacher
