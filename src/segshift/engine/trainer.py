"""The iteration-based trainer: streams in, method step, optimizers, evaluation, checkpoints.

Devices, precision (AMP bf16/fp16) and distribution (DDP, launched with ``torchrun``; gloo on
CPU) come from Lightning Fabric. The method (``segshift.methods.base.Method``) is found through
the registry and owns its networks; the trainer only runs the loop::

    trainer = Trainer(load_config("configs/demo/source_only.yaml"))
    metrics = trainer.fit()

A run directory holds ``config.yaml`` (resolved), ``log.jsonl``, ``tb/``, ``checkpoints/latest.pt``
(+ ``latest.prev.pt``), ``checkpoints/best.pt`` and ``export/`` (safetensors + config.json).
Resume is exact: model, optimizers, schedulers, AMP scaler, EMA teachers (part of the method),
RNG states, stream positions and the step all come back.

Resuming with changed config values follows :data:`RESUME_RULES` (docs/CONTRACTS.md, "Resume
rules"): a value is applied from the resumed step on (the learning-rate schedule re-derived from
the new ``optim.lr`` / ``train.iters`` / ``schedule.*``), ignored (where the run is, how this
invocation runs) or refused with a `ConfigError` naming the key, before anything is written.
A run directory is locked while it trains (``.lock``); stale temp files of killed checkpoint
writes are removed at start-up; a checkpoint is never written while the loss is non-finite or a
weight is; the latest checkpoint is written before an evaluation, whose failure then loses
nothing (the resumed run re-runs the evaluation first).
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

import segshift.methods  # noqa: F401  (registers the methods)
from segshift.config import check_required, save_config
from segshift.data import ConcatSegDataset, build_dataset
from segshift.data.check import class_list, problem_lines, require_valid_labels, sizes_text
from segshift.data.concat import part_configs
from segshift.data.samplers import build_rare_class_sampling
from segshift.engine.checkpoint import (
    capture_rng,
    export_weights,
    load_checkpoint,
    non_finite_entries,
    restore_rng,
    save_checkpoint,
)
from segshift.engine.label_free import TranslationScores, UnlabeledScores
from segshift.engine.loaders import Stream, collate, evaluation_loader, shard_indices
from segshift.engine.logging import RunLogger, drop_records_after
from segshift.engine.schedules import build_scheduler
from segshift.engine.startup_checks import check_eval_subset, stream_notes
from segshift.engine.threads import setup_threads
from segshift.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingError,
    TrainingInterrupted,
)
from segshift.evaluation import evaluate
from segshift.evaluation.visualise import write_png
from segshift.fileio import DirectoryLock, remove_stale_temp_files
from segshift.models import freeze_normalization
from segshift.registry import METHODS

SAMPLE_IMAGES = 4  # fixed images per sample stream in a sample grid (image translation)


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


# What a value that differs from the checkpoint's config means on resume, by dotted key (first
# matching pattern wins; a key no pattern names is refused). docs/CONTRACTS.md has the table.
#   invocation: how this command runs, never stored with the run (config.yaml keeps null/true)
#   location:   where the run is; the directory being resumed wins
#   applied:    takes effect from the resumed step on (optimizer hyperparameters are overwritten
#               and the learning-rate schedule is re-derived from the new values)
#   refused:    the checkpoint's state would not mean the same thing; start a new run instead
RESUME_RULES: tuple[tuple[str, str, str], ...] = (
    (r"train\.(stop_at|progress|resume)", "invocation", ""),
    (r"(name|output_dir)", "location", ""),
    (r"train\.iters", "applied", "the learning-rate schedule is re-derived"),
    (
        r"train\.(eval_every|ckpt_every|log_every|max_nonfinite|deterministic|accelerator|threads"
        r"|keep_checkpoints_every)",
        "applied",
        "",
    ),
    (r"optim\.(lr|head_lr_mult)", "applied", "the learning-rate schedule is re-derived"),
    (r"optim\.(momentum|nesterov|weight_decay|betas|clip_grad_norm)", "applied", ""),
    (r"schedule\..*", "applied", "the learning-rate schedule is re-derived"),
    (r"eval(\..*)?", "applied", ""),
    (r"data\.val(\..*)?", "applied", "the class names must stay the run's"),
    (r"data\.num_workers", "applied", "stream positions do not depend on it"),
    (r"data\.streams\.[^.]+\.root", "applied", "the same data, moved"),
    (
        r"model\.(encoder_weights|init_from|expected_weights|weights_provenance)",
        "applied",
        "initial weights only: the checkpoint's weights are loaded over them",
    ),
    (
        r"optim\.(name|official_param_repeats)",
        "refused",
        "the run's optimizer state belongs to its optimizer",
    ),
    (
        r"(model|method)(\..*)?",
        "refused",
        "the checkpoint holds the weights and state of the run's model and method",
    ),
    (
        r"(seed|data\.streams(\..*)?)",
        "refused",
        "the run's data order and augmentation are derived from it (exact resume)",
    ),
    (
        r"train\.(precision|devices|num_nodes|strategy|sync_batchnorm)",
        "refused",
        "the run's scaler state and data sharding depend on it",
    ),
    (r".*", "refused", "not known to be safe to change in the middle of a run"),
)


def resume_rule(key: str) -> tuple[str, str]:
    """(kind, reason) of :data:`RESUME_RULES` for a dotted config key."""
    for pattern, kind, reason in RESUME_RULES:
        if re.fullmatch(pattern, key):
            return kind, reason
    raise AssertionError("the last rule matches every key")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def stored_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a run stores it: without this invocation's stop point."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container["train"]["stop_at"] = None  # a stop point belongs to the command, not to the run
    container["train"]["resume"] = True  # `--resume RUN_DIR` reads config.yaml back
    return container


def make_fabric(cfg: DictConfig) -> Fabric:
    train = cfg.train
    fabric = Fabric(
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=train.precision,
    )
    fabric.launch()
    return fabric


def build_method(cfg: DictConfig, num_classes: int) -> Any:
    return METHODS.build(cfg.method.name, cfg=cfg, num_classes=num_classes)


def load_method_state(method: torch.nn.Module, state: dict[str, Any], origin: Path) -> None:
    """Load a method's weights, turning a mismatch into an error naming the file."""
    try:
        method.load_state_dict(state)
    except RuntimeError as err:
        summary = " ".join(str(err).split())[:600]
        raise CheckpointError(
            f"checkpoint {origin} does not fit this model/method (was it written for another "
            f"model or config?): {summary}"
        ) from None


class Trainer:
    """Runs one training configuration in its run directory (see the module docstring)."""

    def __init__(
        self,
        cfg: DictConfig,
        fabric: Fabric | None = None,
        evaluation_only: bool = False,
        *,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        """``evaluation_only``: the training streams' required values may stay unset.

        ``run_dir``: the run directory to train in, whatever ``output_dir`` / ``name`` say
        (``segshift train --resume RUN_DIR``: a copied or moved run, or one resumed from another
        working directory, trains where it is); ``cfg``'s ``output_dir`` and ``name`` are set
        from it. ``overwrite``: with ``train.resume=false``, replace an existing run (its
        checkpoints, log, TensorBoard events and export) instead of refusing to.
        """
        check_required(cfg, skip=("data.streams.",) if evaluation_only else ())
        if run_dir is not None:
            run_dir = Path(run_dir)
            cfg = cfg.copy()
            cfg.output_dir = str(run_dir.parent)
            cfg.name = run_dir.name
        self.cfg = cfg
        self.overwrite = overwrite
        self.fabric = fabric or make_fabric(cfg)
        processes = max(1, self.fabric.world_size // cfg.train.num_nodes)  # on this node
        self.threads = setup_threads(cfg.train.threads, processes)  # printed by fit
        self.run_dir = run_dir_of(cfg)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.fabric.seed_everything(cfg.seed, workers=False, verbose=False)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.normalization = freeze_normalization(cfg.model)  # recorded in config.yaml
        val_cfg = cfg.data.val
        self.val_set = build_dataset(val_cfg, train=False) if val_cfg is not None else None
        self.val_report = self._check_val_labels()  # before step 1, not at the first evaluation
        self.label_space = self._label_space()  # None: a translation method, no labels
        self.num_classes = self.label_space.num_classes if self.label_space is not None else 0
        check_eval_subset(cfg, self.label_space)  # a typo would score all classes
        self.method = build_method(cfg, self.num_classes)
        for name in self.method.streams:
            if self.method.stream_config(cfg.data.streams, name) is None:
                known = ", ".join(cfg.data.streams) or "none"
                raise ConfigError(
                    f"method '{cfg.method.name}' needs the data stream '{name}': set "
                    f"data.streams.{name} (configured streams: {known})"
                )
        if cfg.train.sync_batchnorm and self.fabric.world_size > 1:
            if self.fabric.device.type == "cpu":
                raise ConfigError("train.sync_batchnorm needs GPUs (PyTorch has no CPU version)")
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.module = self.fabric.setup_module(self.method)
        self.streams: dict[str, Stream] = {}
        self.optimizers: dict[str, Any] = {}
        self.schedulers: dict[str, Any] = {}
        self.step = 0
        self.best: dict[str, Any] = {"miou": -math.inf, "step": -1}
        self.nonfinite = 0
        self._nonfinite_since = 0  # the first step (1-based) of the current non-finite streak
        self._stop_signal: signal.Signals | None = None
        self._latest_step: int | None = None  # the step latest.pt holds, when it is readable
        self._latest_eval_pending = False  # latest.pt was written before its step's evaluation
        self._eval_pending: int | None = None  # a resumed step whose evaluation is owed
        self._save_due = False  # a checkpoint postponed while the loss was non-finite
        self._notes: list[str] = []  # resume notes, printed once the logger exists
        self._sample_batches: dict[str, Any] | None = None  # fixed images of sample grids
        self._samples_step: int | None = None  # the step of the last sample grid written
        self._unlabeled_scores: UnlabeledScores | None = None  # eval.unlabeled_scores
        self._translation_scores: TranslationScores | None = None  # translate's quality

    # ----------------------------------------------------------------- set-up
    def _check_val_labels(self) -> Any:
        """Read every validation mask once (rank 0, in ``data.num_workers`` threads): a DataError
        on every rank lists all bad files; the report gives the image sizes."""
        if self.val_set is None:
            return None
        report = None
        if self.fabric.global_rank == 0:
            workers = max(1, self.cfg.data.num_workers)
            try:
                report = require_valid_labels(self.val_set, "data.val", workers)
            except DataError as error:
                report = error
        if self.fabric.world_size > 1:
            report = self.fabric.broadcast(report, src=0)
        if isinstance(report, DataError):
            raise report
        return report

    def _unused_streams(self) -> list[str]:
        """Configured ``data.streams`` that the method reads neither itself nor by default."""
        streams = self.cfg.data.streams
        read = {
            n if n in streams else self.method.stream_defaults.get(n) for n in self.method.streams
        }
        return [name for name in streams if name not in read]

    def _streams_read_as_val(self) -> list[str]:
        """Streams the method reads whose dataset, root and split are data.val's: a folder root
        without split files or folders (``split: train``, the default) trains on its val set."""
        val = self.cfg.data.val
        if val is None:
            return []

        def same(node: Any, other: Any) -> bool:
            where = [Path(str(n.root)).expanduser().resolve() for n in (node, other)]
            return node.name == other.name and where[0] == where[1] and node.split == other.split

        streams, vals = self.cfg.data.streams, part_configs(val)  # each part of a concatenation
        read = [n for n in self.method.streams if n in streams]
        return [n for n in read if any(same(p, v) for p in part_configs(streams[n]) for v in vals)]

    def _log_data_summary(self, logger: RunLogger) -> None:
        """The method and what it reads, the classes, the validation images; a WARNING for each
        configured stream it does not read (not loaded, so a missing root does not stop it)."""
        cfg, method = self.cfg, self.method
        reads = [
            f"data.streams.{n}"
            if n in cfg.data.streams
            else f"{n} (a second pass over data.streams.{method.stream_defaults[n]})"
            for n in method.streams
        ]
        logger.message(f"method {cfg.method.name} reads {', '.join(reads) or 'no stream'}")
        if self.label_space is not None:
            logger.message(class_list(self.label_space.class_names))
        if self.val_report is not None:
            logger.message(
                f"data.val: {self.val_report.images} images, image sizes (HxW) "
                f"{sizes_text(self.val_report.sizes)}"
            )
            for line in problem_lines(self.val_report, warnings=True):
                logger.message(f"WARNING: {line.strip()}")
        for name in self._streams_read_as_val():
            logger.message(
                f"WARNING: data.val reads the same images as data.streams.{name} (dataset "
                f"{cfg.data.val.name}, root {cfg.data.val.root}, split {cfg.data.val.split}): its "
                "scores measure training images. Give data.val another root or split (e.g. "
                "data.val.split=val with a val.txt or val/ folder)"
            )
        for name in self._unused_streams():
            root = Path(str(cfg.data.streams[name].root)).expanduser()
            missing = "" if root.is_dir() else f"; its root {root} does not exist"
            logger.message(
                f"WARNING: data.streams.{name} is configured but method '{cfg.method.name}' does "
                f"not read it: it is not loaded{missing}. Remove it, or choose a method that "
                "uses it"
            )

    def _label_space(self) -> Any:
        """The validation set's label space, else the first labeled stream's; None for a
        method without a segmenter (image translation) on unlabeled data."""
        if self.val_set is not None:
            return self.val_set.label_space
        for stream_cfg in self.cfg.data.streams.values():
            if stream_cfg.labeled:
                return build_dataset(stream_cfg, train=False).label_space
        if not METHODS.get(self.cfg.method.name).segments:
            return None
        raise ConfigError("no labeled dataset to take the label space from: set data.val")

    def setup_training(self) -> None:
        """Build the data streams, optimizers and schedulers (not needed for evaluation)."""
        if self.optimizers:
            return
        cfg = self.cfg
        self.streams = self._build_streams()
        optimizers = self.method.configure_optimizers()
        self.schedulers = {
            name: build_scheduler(
                opt,
                name=cfg.schedule.name,
                total_iters=cfg.train.iters,
                power=cfg.schedule.power,
                warmup_iters=cfg.schedule.warmup_iters,
                warmup_ratio=cfg.schedule.warmup_ratio,
                min_lr=cfg.schedule.min_lr,
                base_lr=opt.param_groups[0]["lr"],  # each optimizer decays from its own rate
                constant_iters=cfg.schedule.constant_iters,
            )
            for name, opt in optimizers.items()
        }
        wrapped = self.fabric.setup_optimizers(*optimizers.values())
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        self.optimizers = dict(zip(optimizers, wrapped))

    def _build_streams(self) -> dict[str, Stream]:
        streams = {}
        for index, name in enumerate(self.method.streams):
            stream_cfg = self.method.stream_config(self.cfg.data.streams, name)
            dataset = build_dataset(stream_cfg, train=True)
            names = list(dataset.label_space.class_names)
            space = self.label_space
            if space is not None and dataset.labeled and names != list(space.class_names):
                raise ConfigError(
                    f"data.streams.{name} ({stream_cfg.name}, label space "
                    f"'{dataset.label_space.name}', {len(names)} classes) does not match the "
                    f"evaluation label space '{self.label_space.name}' "
                    f"({self.num_classes} classes): use one class list for both"
                )
            rare_classes = None
            if stream_cfg.rcs_temperature is not None:
                # rank 0 counts the class pixels and caches them in the run directory; the other
                # ranks then read its file (a shared run directory is assumed, as for resuming)
                with self.fabric.rank_zero_first():
                    rare_classes = build_rare_class_sampling(
                        dataset, stream_cfg, self.run_dir / "rcs", self.cfg.data.num_workers
                    )
            streams[name] = Stream(
                dataset,
                stream_cfg.batch_size,
                seed=self.cfg.seed * 1000 + index,
                num_workers=self.cfg.data.num_workers,
                rank=self.fabric.global_rank,
                world_size=self.fabric.world_size,
                pin_memory=self.fabric.device.type == "cuda",
                rare_classes=rare_classes,
            )
        return streams

    def val_loader(self) -> DataLoader | None:
        if self.val_set is None:
            return None
        indices = shard_indices(len(self.val_set), self.fabric.global_rank, self.fabric.world_size)
        return evaluation_loader(  # batches of one image size: mixed sizes work at any batch size
            self.val_set, indices, self.cfg.data.val.batch_size, self.cfg.data.num_workers
        )

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "precision": self.fabric.strategy.precision.state_dict(),
            "streams": {k: s.state_dict() for k, s in self.streams.items()},
            "rng": capture_rng(),
            "best": dict(self.best),
            "nonfinite": self.nonfinite,
            "config": stored_config(self.cfg),
            "label_space": self.label_space_info(),
        }

    def label_space_info(self) -> dict[str, Any] | None:
        space = self.label_space
        if space is None:
            return None
        return {
            "name": space.name,
            "class_names": list(space.class_names),
            "palette": [list(c) for c in space.palette],
        }

    def _check_finite_weights(self, what: str) -> None:
        bad = non_finite_entries(self.method.state_dict())
        if bad:
            raise TrainingError(
                f"the weights hold non-finite values after step {self.step} ({', '.join(bad[:5])}"
                f"{', ...' if len(bad) > 5 else ''}): training diverged; not writing {what}. "
                f"{self._last_good()}"
            )

    def _last_good(self) -> str:
        if self._latest_step is None:
            return f"No checkpoint of this run was written yet (in {self.ckpt_dir})."
        return (
            f"The last checkpoint, {self.ckpt_dir / 'latest.pt'}, holds step {self._latest_step}, "
            "written while the loss and the weights were finite."
        )

    def save(self, name: str = "latest", eval_pending: bool = False) -> bool:
        """Write ``checkpoints/<name>.pt``; return False when postponed (the loss is non-finite).

        The previous ``latest`` becomes ``latest.prev`` only when it holds another step, so a
        rewrite of the same step (after its evaluation, on a signal) keeps ``.prev`` distinct.
        ``eval_pending``: the checkpoint is written before this step's evaluation; a run resumed
        from it evaluates first.
        """
        if self.nonfinite:
            self._save_due = True
            return False
        self._check_finite_weights(f"checkpoints/{name}.pt")
        state = self.state_dict()
        state["eval_pending"] = self.step if eval_pending else None
        rotate = name != "latest" or (
            self._latest_step is not None and self._latest_step != self.step
        )
        if self.fabric.global_rank == 0:
            save_checkpoint(self.ckpt_dir / f"{name}.pt", state, keep_previous=rotate)
        if name == "latest":
            self._latest_step, self._latest_eval_pending = self.step, eval_pending
            self._save_due = False
        self.fabric.barrier()
        return True

    def _check_resumed_config(self, old: dict[str, Any], origin: Path, step: int) -> list[str]:
        """Apply :data:`RESUME_RULES` to the checkpoint's config; return notes on what applies."""
        current = _flatten(stored_config(self.cfg))
        saved = _flatten(old)
        notes, refused = [], []
        for key in sorted(saved.keys() | current.keys()):
            if saved.get(key) == current.get(key):
                continue
            kind, reason = resume_rule(key)
            if key not in saved and kind == "refused":  # a key newer than the run: its default
                notes.append(f"{key} (not in the run's config) = {current[key]!r}")
                continue
            change = f"{key}: {saved.get(key)!r} -> {current.get(key)!r}"
            if kind == "refused":
                refused.append(f"{change} ({reason})")
            elif kind == "applied":
                notes.append(change + (f" ({reason})" if reason else ""))
        if refused:
            raise ConfigError(
                f"cannot resume {self.run_dir} (checkpoint {origin}, step {step}) with a changed "
                f"{'; '.join(refused)}. Resume without changing it, or start a new run: another "
                "name=... or output_dir=..., or train.resume=false with --overwrite to replace "
                "this one"
            )
        if self.cfg.train.iters < step:
            raise ConfigError(
                f"train.iters={self.cfg.train.iters} is below the step {self.run_dir} is at "
                f"({step}): give train.iters >= {step}, or start a new run"
            )
        return notes

    def resume(self, path: Path | None = None) -> bool:
        """Restore the whole training state from ``path`` or the run's latest checkpoint.

        Values that differ from the checkpoint's config follow :data:`RESUME_RULES`: refused
        ones raise a `ConfigError` before any state is restored; applied optimizer and schedule
        values replace the checkpoint's from this step on.
        """
        self.setup_training()
        latest = self.ckpt_dir / "latest.pt"
        path = Path(path) if path is not None else latest
        if not path.exists() and not (path.with_name(path.stem + ".prev.pt")).exists():
            return False
        state, origin = load_checkpoint(path)
        step = int(state["step"])
        saved_names = (state.get("label_space") or {}).get("class_names")
        space = self.label_space
        known = saved_names is not None and space is not None
        if known and list(saved_names) != list(space.class_names):
            raise ConfigError(
                f"cannot resume {self.run_dir}: its classes are {list(saved_names)}, the "
                f"configured data's are {list(self.label_space.class_names)} (data.val)"
            )
        notes = self._check_resumed_config(state.get("config", {}), origin, step)
        # after the config check: a changed model.arch is named there, not by a key dump
        load_method_state(self.method, state["method"], origin)
        # this run's optimizer hyperparameters (fresh from the config) replace the checkpoint's
        fresh = {
            name: [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
            for name, opt in self.optimizers.items()
        }
        for name, opt in self.optimizers.items():
            if name not in state["optimizers"]:
                raise ConfigError(
                    f"cannot resume {self.run_dir}: the method's optimizer '{name}' is not in "
                    f"{origin} (optimizers there: {', '.join(state['optimizers'])})"
                )
            try:
                opt.load_state_dict(state["optimizers"][name])
            except (ValueError, KeyError) as err:
                raise ConfigError(
                    f"cannot resume {self.run_dir}: the optimizer state in {origin} does not fit "
                    f"this run's '{name}' optimizer ({err}); start a new run"
                ) from None
            for group, values in zip(opt.param_groups, fresh[name], strict=True):
                group.update(values)
        for name, sched in self.schedulers.items():
            # only the position: the factor function and the base rates are this config's
            old = state["schedulers"][name]
            sched.last_epoch = int(old["last_epoch"])
            sched._step_count = int(old.get("_step_count", sched.last_epoch + 1))
            rates = [
                base * factor(sched.last_epoch)
                for base, factor in zip(sched.base_lrs, sched.lr_lambdas, strict=True)
            ]
            for group, rate in zip(sched.optimizer.param_groups, rates, strict=True):
                group["lr"] = rate
            sched._last_lr = rates
        self.fabric.strategy.precision.load_state_dict(state["precision"])
        for name, stream in self.streams.items():
            stream.load_state_dict(state["streams"][name])
        restore_rng(state["rng"])
        self.step = step
        self.best = state["best"]
        self.nonfinite = int(state.get("nonfinite", 0))
        # a checkpoint read from latest.prev leaves latest.pt unreadable: overwrite it, and keep
        # the readable .prev, at the next save
        self._latest_step = step if origin == latest else None
        pending = state.get("eval_pending")
        self._eval_pending = int(pending) if pending is not None else None
        self._latest_eval_pending = self._eval_pending is not None
        self._notes += [f"resuming with a changed {note}" for note in notes]
        return True

    # ------------------------------------------------------------------ loop
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signal.Signals(signum)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).float()
        if self.fabric.world_size > 1:
            flag = self.fabric.all_reduce(flag, reduce_op="min")
        return bool(flag.item() > 0)

    def _stop_requested(self) -> bool:
        if self.fabric.world_size == 1:
            return self._stop_signal is not None
        flag = torch.tensor(1.0 if self._stop_signal else 0.0, device=self.fabric.device)
        return bool(self.fabric.all_reduce(flag, reduce_op="max").item() > 0)

    def train_step(self) -> dict[str, Any]:
        """One optimisation step; returns the method's outputs, detached (tensors stay on the
        device: converting them to numbers syncs with the GPU, so it happens only when logging)."""
        batch = {name: self.fabric.to_device(next(s)) for name, s in self.streams.items()}
        out = self.module(batch, self.step)
        loss = out["loss"]
        if self._all_finite(loss):
            self.nonfinite = 0
            self.fabric.backward(loss)
            clip = self.cfg.optim.clip_grad_norm
            for opt in self.optimizers.values():
                if clip:
                    self.fabric.clip_gradients(self.module, opt, max_norm=clip)
                opt.step()
            self.method.after_step(self.step)
        else:
            self.nonfinite += 1
            if self.nonfinite == 1:
                self._nonfinite_since = self.step + 1  # steps are counted from 1, as logged
            if self.nonfinite >= self.cfg.train.max_nonfinite:
                names = [n for b in batch.values() for n in b.get("name", [])]
                first, last = self._nonfinite_since, self.step + 1
                span = f"step {last}" if first == last else f"steps {first} to {last}"
                raise TrainingError(
                    f"the loss was non-finite ({loss.item()}) for {self.nonfinite} consecutive "
                    f"steps: {span}, the last on batch {names}; stopped without writing a "
                    f"checkpoint. {self._last_good()}"
                )
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        for sched in self.schedulers.values():
            sched.step()
        self.step += 1
        return {k: v.detach() if torch.is_tensor(v) else v for k, v in out.items()}

    def _existing_run(self) -> bool:
        names = ("latest.pt", "latest.prev.pt", "best.pt")
        return (
            any((self.ckpt_dir / n).exists() for n in names)
            or (self.run_dir / "log.jsonl").exists()
        )

    def _start_over(self) -> None:
        """``overwrite``: remove what a previous run wrote (its data cache rcs/ stays)."""
        for name in ("checkpoints", "tb", "export"):
            shutil.rmtree(self.run_dir / name, ignore_errors=True)
        for name in ("log.jsonl", "config.yaml"):
            (self.run_dir / name).unlink(missing_ok=True)

    def fit(self) -> dict[str, Any]:
        """Train to ``train.iters`` (resuming if a checkpoint exists); return the last metrics.

        Holds the run directory's lock throughout (rank 0); see the module docstring.
        """
        lock = DirectoryLock(self.run_dir) if self.fabric.global_rank == 0 else None
        if lock is not None:
            taken_over = lock.acquire()
            if taken_over:
                self._notes.append(taken_over)
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        is_main = self.fabric.global_rank == 0
        if is_main:  # under the lock: no other process can be writing these
            dirs = (self.run_dir, self.ckpt_dir, self.run_dir / "export", self.run_dir / "eval")
            removed = remove_stale_temp_files(*dirs)
            if removed:
                self._notes.append(
                    f"removed {len(removed)} temp file(s) of interrupted writes: "
                    + ", ".join(p.name for p in removed[:3])
                    + (", ..." if len(removed) > 3 else "")
                )
        if self._existing_run() and (self.overwrite or not cfg.train.resume):
            if not self.overwrite:
                raise ConfigError(
                    f"{self.run_dir} already holds a run and train.resume=false would overwrite "
                    "it: resume it (leave train.resume at true), train into another directory "
                    "(name=... / output_dir=...), or pass --overwrite to start it over"
                )
            self.fabric.barrier()  # every rank has looked before rank 0 removes
            if is_main:
                self._start_over()
                self._notes.append(f"--overwrite: removed the previous run in {self.run_dir}")
            self.fabric.barrier()
        self.setup_training()
        self._unlabeled_scores = UnlabeledScores.for_trainer(self)
        self._translation_scores = TranslationScores.for_trainer(self) if is_main else None
        had_log = (self.run_dir / "log.jsonl").exists()
        resumed = cfg.train.resume and not self.overwrite and self.resume()
        # only now, with the resume accepted, does this invocation write anything
        saved = self.run_dir / "config.yaml"
        if is_main:
            dropped = drop_records_after(
                self.run_dir / "log.jsonl", self.step, evals_from=self._eval_pending
            )
            if dropped:
                self._notes.append(
                    f"dropped {dropped} record(s) of steps after {self.step} from log.jsonl "
                    "(they are re-run)"
                )
            save_config(OmegaConf.create(stored_config(cfg)), saved)
        logger = RunLogger(
            self.run_dir,
            enabled=is_main,
            total_iters=cfg.train.iters,
            start_step=self.step,
            progress=cfg.train.progress,
            purge_step=self.step + 1 if had_log else None,
        )
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        if resumed:
            logger.message(f"resumed {self.run_dir} at step {self.step}")
        elif cfg.train.resume and had_log:
            logger.message(f"no checkpoint in {self.ckpt_dir} yet: starting from step 0")
        for note in self._notes:
            logger.message(f"note: {note}")
        self._notes = []
        logger.message(self.threads)
        norm = self.normalization
        logger.message(
            f"input normalisation: {norm.preset} ({norm.channel_order.upper()}, x{norm.scale:g}, "
            f"mean {list(norm.mean)}, std {list(norm.std)})"
        )
        self._log_data_summary(logger)
        for name, stream in self.streams.items():
            # say how often each stream's images repeat: a few labeled images cycled against
            # many unlabeled ones are seen far more often, and the log should say so
            size, batch = len(stream.dataset), stream.batch_size
            passes = cfg.train.iters * batch * self.fabric.world_size / max(size, 1)
            labels = "labeled" if getattr(stream.dataset, "labeled", True) else "unlabeled"
            parts = ""
            if isinstance(stream.dataset, ConcatSegDataset):
                parts = f" ({stream.dataset.parts_summary()})"
            node = self.method.stream_config(cfg.data.streams, name)
            crop = "x".join(map(str, node.crop_size)) if node.crop_size else "full size"
            resize = f", resized to {'x'.join(map(str, node.resize))}" if node.resize else ""
            logger.message(
                f"data.streams.{name}: {size} {labels} images{parts}, {batch} per step per "
                f"process: {passes:.1f} passes over them in {cfg.train.iters} steps "
                f"(crop {crop}{resize})"
            )
            for note in stream_notes(f"data.streams.{name}", node, stream.dataset):
                logger.message(note)
            if stream.rare_classes is not None:
                classes = stream.dataset.label_space.class_names  # type: ignore[attr-defined]
                summary = stream.rare_classes.summary(classes)
                logger.message(f"rare-class sampling on data.streams.{name}: {summary}")
        if (
            cfg.model.expected_weights
            and cfg.model.encoder_weights is None
            and not cfg.model.init_from
        ):
            logger.message(
                "WARNING: this config is meant to start from pretrained weights "
                f"({cfg.model.expected_weights}) but model.encoder_weights is null: training from "
                "random weights will not reach the published number. Pass "
                "model.encoder_weights=PATH to the downloaded file."
            )
        metrics: dict[str, Any] = {}
        try:
            self.module.train()
            if self._eval_pending is not None and self._eval_pending == self.step:
                if cfg.train.eval_every:  # the evaluation the checkpoint was written before
                    metrics = self._evaluate_step(logger)
                self._eval_pending = None
            tick = time.perf_counter()
            while self.step < cfg.train.iters:
                values = self.train_step()
                logger.advance()
                step = self.step
                if step % cfg.train.log_every == 0 or step == cfg.train.iters:
                    lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    elapsed = time.perf_counter() - tick
                    values = {k: float(v) if torch.is_tensor(v) else v for k, v in values.items()}
                    values.update(lr=lr, sec_per_step=elapsed / cfg.train.log_every)
                    logger.log(step, values)
                    tick = time.perf_counter()
                eval_due = bool(cfg.train.eval_every) and (
                    step % cfg.train.eval_every == 0 or step == cfg.train.iters
                )
                stop_here = cfg.train.stop_at is not None and step >= cfg.train.stop_at
                ckpt_due = (
                    step % cfg.train.ckpt_every == 0
                    or step == cfg.train.iters
                    or stop_here
                    or self._save_due
                )
                # saved before evaluating: an evaluation error then loses no training
                if ckpt_due and not self.save("latest", eval_pending=eval_due):
                    logger.message(f"checkpoint of step {step} postponed: the loss is non-finite")
                if eval_due:
                    metrics = self._evaluate_step(logger)
                keep = cfg.train.keep_checkpoints_every
                if keep and step % keep == 0:
                    self._keep_checkpoint(logger)
                if stop_here:
                    self._settle()
                    logger.message(f"stopped at step {step} (train.stop_at); resume to go on")
                    return metrics
                if self._stop_requested():
                    written = self._settle()
                    received = self._stop_signal or signal.SIGTERM  # or another rank's
                    where = (
                        f"checkpoint written to {self.ckpt_dir / 'latest.pt'}"
                        if written
                        else f"no checkpoint written (the loss is non-finite). {self._last_good()}"
                    )
                    raise TrainingInterrupted(
                        f"stopped by {received.name} at step {step}; {where}. Run the same "
                        f"command again (or `segshift train --resume {self.run_dir}`) to go on.",
                        signum=int(received),
                    )
            self._settle()
            if is_main:
                self._check_finite_weights("the export")
                self._write_samples(logger)
                export_weights(
                    self.run_dir / "export",
                    self.method.export_model(),
                    {
                        "config": stored_config(cfg),
                        "label_space": self.label_space_info(),
                        "step": self.step,
                    },
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logger.close()
        return metrics

    def _settle(self) -> bool:
        """Make latest.pt hold this step with its evaluation done (no rotation when it already
        holds this step); return whether latest.pt holds this step."""
        if self._latest_step == self.step and not self._latest_eval_pending:
            return True
        return self.save("latest")

    def _evaluate_step(self, logger: RunLogger) -> dict[str, Any]:
        """Evaluate and track the best; on an error, make sure this step's state is saved."""
        try:
            metrics = self.evaluate()
            if self._unlabeled_scores is not None:  # label-free scores beside the mIoU
                model = self.method.eval_model()
                metrics.update(self._unlabeled_scores.measure(self.fabric, model))
            self._write_samples(logger)
        except BaseException:
            if self.fabric.world_size == 1 and self._latest_step != self.step:
                self.save("latest", eval_pending=True)
            if self._latest_step == self.step:
                logger.message(
                    f"evaluation at step {self.step} failed; the training state is saved in "
                    f"{self.ckpt_dir / 'latest.pt'}: fix the cause and resume (the evaluation "
                    "runs first)"
                )
            raise
        self._track_best(metrics, logger)
        return metrics

    def _write_samples(self, logger: RunLogger) -> None:
        """The method's sample grid (``visualise``) of fixed images of its ``sample_streams``:
        ``samples/step_XXXXXX.png`` and TensorBoard's ``samples`` (main process only)."""
        streams = self.method.sample_streams
        if not streams or self.fabric.global_rank != 0 or self._samples_step == self.step:
            return
        if self._sample_batches is None:  # evenly spread images, augmentation seed 0: fixed
            self._sample_batches = {}
            for name in streams:
                dataset = self.streams[name].dataset
                count = min(SAMPLE_IMAGES, len(dataset))
                items = [dataset[(k * len(dataset) // count, 0)] for k in range(count)]
                self._sample_batches[name] = collate(items)
        batches = {k: self.fabric.to_device(b) for k, b in self._sample_batches.items()}
        training = self.method.training
        self.method.eval()
        try:
            with torch.no_grad(), self.fabric.autocast():
                grid = self.method.visualise(batches)
                scores = (
                    self._translation_scores(self.fabric.device) if self._translation_scores else {}
                )
        finally:
            self.method.train(training)
        if scores:  # translation quality (segshift.engine.label_free)
            logger.log(self.step, scores, kind="eval")
        if grid is None:
            return
        image = (grid.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
        image = image.cpu().numpy()
        write_png(self.run_dir / "samples" / f"step_{self.step:06d}.png", image)
        logger.image("samples", image, self.step)
        self._samples_step = self.step

    def _keep_checkpoint(self, logger: RunLogger) -> None:
        """``train.keep_checkpoints_every``: the model of this step as ``step_XXXXXX.pt``
        (what eval / predict / score read; no optimizer state)."""
        if self.nonfinite or non_finite_entries(self.method.state_dict()):
            logger.message(f"step_{self.step:06d}.pt not kept: non-finite loss or weights")
            return
        if self.fabric.global_rank == 0:
            state = {"step": self.step, "method": self.method.state_dict()}
            state |= {"config": stored_config(self.cfg), "label_space": self.label_space_info()}
            save_checkpoint(self.ckpt_dir / f"step_{self.step:06d}.pt", state, keep_previous=False)
        self.fabric.barrier()

    def _track_best(self, metrics: dict[str, Any], logger: RunLogger) -> None:
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, float | int)}
        if scalars or self.method.segments:  # a translation method evaluates nothing
            logger.log(self.step, scalars, kind="eval")
        miou = metrics.get("miou", float("nan"))
        if isinstance(miou, float) and miou > self.best["miou"]:
            if non_finite_entries(self.method.state_dict()):
                logger.message(f"best.pt not updated at step {self.step}: non-finite weights")
                return
            self.best = {"miou": float(miou), "step": self.step}
            if self.fabric.global_rank == 0:
                save_checkpoint(
                    self.ckpt_dir / "best.pt",
                    {
                        "step": self.step,
                        "method": self.method.state_dict(),
                        "metrics": scalars,
                        "config": stored_config(self.cfg),
                        "label_space": self.label_space_info(),
                    },
                )
            self.fabric.barrier()

    def evaluate(
        self,
        progress: bool = False,
        class_order: list[int] | None = None,
        model: torch.nn.Module | None = None,
    ) -> dict[str, Any]:
        """Evaluate the method's eval model (or ``model``, e.g. an exported ONNX model) on the
        validation set, summed over ranks.

        ``class_order``: the model's output channel of each validation class, for a checkpoint
        whose classes the data lists in another order (`segshift.engine.restore.class_order`).
        """
        loader = self.val_loader()
        model = model if model is not None else self.method.eval_model()
        if loader is None or model is None:  # None: a translation method
            return {}
        ev = self.cfg.eval
        result = evaluate(  # switches the model to eval mode and back
            model,
            loader,
            self.num_classes,
            mode=ev.mode,
            crop_size=tuple(ev.crop_size) if ev.crop_size else None,
            stride=tuple(ev.stride) if ev.stride else None,
            flip=ev.flip,
            scales=tuple(ev.scales),
            device=self.fabric.device,
            all_reduce=lambda t: self.fabric.all_reduce(t, reduce_op="sum"),
            progress=progress,
            subset=self.label_space.subsets.get(ev.subset) if ev.subset else None,
            per_image=ev.per_image_miou,
            class_order=class_order,
        )
        iou = torch.tensor(result["iou"], dtype=torch.float64)
        for name, ids in self.label_space.subsets.items():  # e.g. SYNTHIA's 13 of 16 classes
            result[f"miou_{name}"] = float(torch.nanmean(iou[list(ids)]))
        return result
