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
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

import segshift.methods  # noqa: F401  (registers the methods)
from segshift.config import check_required, config_diff, save_config
from segshift.data import build_dataset
from segshift.data.samplers import build_rare_class_sampling
from segshift.engine.checkpoint import (
    capture_rng,
    export_weights,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from segshift.engine.loaders import Stream, collate, shard_indices
from segshift.engine.logging import RunLogger
from segshift.engine.schedules import build_scheduler
from segshift.errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from segshift.evaluation import evaluate
from segshift.models import freeze_normalization
from segshift.registry import METHODS


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


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
        self, cfg: DictConfig, fabric: Fabric | None = None, evaluation_only: bool = False
    ) -> None:
        """``evaluation_only``: the training streams' required values may stay unset."""
        check_required(cfg, skip=("data.streams.",) if evaluation_only else ())
        self.cfg = cfg
        self.fabric = fabric or make_fabric(cfg)
        self.run_dir = run_dir_of(cfg)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.fabric.seed_everything(cfg.seed, workers=False, verbose=False)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.normalization = freeze_normalization(cfg.model)  # recorded in config.yaml
        val_cfg = cfg.data.val
        self.val_set = build_dataset(val_cfg, train=False) if val_cfg is not None else None
        self.label_space = self._label_space()
        self.num_classes = self.label_space.num_classes
        self.method = build_method(cfg, self.num_classes)
        for name in self.method.streams:
            if name not in cfg.data.streams:
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
        self._stop_signal: signal.Signals | None = None

    # ----------------------------------------------------------------- set-up
    def _label_space(self) -> Any:
        """The validation set's label space, else the first labeled stream's."""
        if self.val_set is not None:
            return self.val_set.label_space
        for stream_cfg in self.cfg.data.streams.values():
            if stream_cfg.labeled:
                return build_dataset(stream_cfg, train=False).label_space
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
            )
            for name, opt in optimizers.items()
        }
        wrapped = self.fabric.setup_optimizers(*optimizers.values())
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        self.optimizers = dict(zip(optimizers, wrapped))

    def _build_streams(self) -> dict[str, Stream]:
        streams = {}
        for index, name in enumerate(self.method.streams):
            stream_cfg = self.cfg.data.streams[name]
            dataset = build_dataset(stream_cfg, train=True)
            names = list(dataset.label_space.class_names)
            if dataset.labeled and names != list(self.label_space.class_names):
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
        return DataLoader(
            Subset(self.val_set, indices),
            batch_size=self.cfg.data.val.batch_size,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
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
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "label_space": self.label_space_info(),
        }

    def label_space_info(self) -> dict[str, Any]:
        space = self.label_space
        return {
            "name": space.name,
            "class_names": list(space.class_names),
            "palette": [list(c) for c in space.palette],
        }

    def save(self, name: str = "latest") -> None:
        if self.fabric.global_rank == 0:
            save_checkpoint(self.ckpt_dir / f"{name}.pt", self.state_dict())
        self.fabric.barrier()

    def resume(self, path: Path | None = None) -> bool:
        """Restore the whole training state from ``path`` or the run's latest checkpoint."""
        self.setup_training()
        path = path or self.ckpt_dir / "latest.pt"
        if not path.exists() and not (path.with_name(path.stem + ".prev.pt")).exists():
            return False
        state, origin = load_checkpoint(path)
        load_method_state(self.method, state["method"], origin)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.fabric.strategy.precision.load_state_dict(state["precision"])
        for name, stream in self.streams.items():
            stream.load_state_dict(state["streams"][name])
        restore_rng(state["rng"])
        self.step = int(state["step"])
        self.best = state["best"]
        self.nonfinite = int(state.get("nonfinite", 0))
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
            if self.nonfinite >= self.cfg.train.max_nonfinite:
                names = [n for b in batch.values() for n in b.get("name", [])]
                raise TrainingError(
                    f"the loss was non-finite ({loss.item()}) for {self.nonfinite} consecutive "
                    f"steps, the last at step {self.step} on batch {names}; stopped without "
                    f"writing a checkpoint (the last good one is in {self.ckpt_dir})"
                )
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        for sched in self.schedulers.values():
            sched.step()
        self.step += 1
        return {k: v.detach() if torch.is_tensor(v) else v for k, v in out.items()}

    def fit(self) -> dict[str, Any]:
        """Train to ``train.iters`` (resuming if a checkpoint exists); return the last metrics."""
        cfg = self.cfg
        self.setup_training()
        resumed = cfg.train.resume and self.resume()
        is_main = self.fabric.global_rank == 0
        saved = self.run_dir / "config.yaml"
        changed = config_diff(OmegaConf.load(saved), cfg) if resumed and saved.is_file() else []
        if is_main:
            save_config(cfg, saved)
        logger = RunLogger(
            self.run_dir,
            enabled=is_main,
            total_iters=cfg.train.iters,
            start_step=self.step,
            progress=cfg.train.progress,
        )
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        if resumed:
            logger.message(f"resumed {self.run_dir} at step {self.step}")
        norm = self.normalization
        logger.message(
            f"input normalisation: {norm.preset} ({norm.channel_order.upper()}, x{norm.scale:g}, "
            f"mean {list(norm.mean)}, std {list(norm.std)})"
        )
        for name, stream in self.streams.items():
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
        if changed:
            logger.message(
                f"note: the config differs from the one this run started with in: "
                f"{', '.join(changed)}"
            )
        metrics: dict[str, Any] = {}
        try:
            self.module.train()
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
                if cfg.train.eval_every and (
                    step % cfg.train.eval_every == 0 or step == cfg.train.iters
                ):
                    metrics = self.evaluate()
                    self._track_best(metrics, logger)
                stop_here = cfg.train.stop_at is not None and step >= cfg.train.stop_at
                if step % cfg.train.ckpt_every == 0 or step == cfg.train.iters or stop_here:
                    self.save("latest")
                if stop_here:
                    logger.message(f"stopped at step {step} (train.stop_at); resume to go on")
                    return metrics
                if self._stop_requested():
                    self.save("latest")
                    received = self._stop_signal or signal.SIGTERM  # or another rank's
                    raise TrainingInterrupted(
                        f"stopped by {received.name} at step {step}; checkpoint written to "
                        f"{self.ckpt_dir / 'latest.pt'}. Run the same command again (or "
                        f"`segshift train --resume {self.run_dir}`) to go on.",
                        signum=int(received),
                    )
            if is_main:
                export_weights(
                    self.run_dir / "export",
                    self.method.eval_model(),
                    {
                        "config": OmegaConf.to_container(cfg, resolve=True),
                        "label_space": self.label_space_info(),
                        "step": self.step,
                    },
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logger.close()
        return metrics

    def _track_best(self, metrics: dict[str, Any], logger: RunLogger) -> None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
        logger.log(self.step, scalars, kind="eval")
        miou = metrics.get("miou", float("nan"))
        if isinstance(miou, float) and miou > self.best["miou"]:
            self.best = {"miou": miou, "step": self.step}
            if self.fabric.global_rank == 0:
                save_checkpoint(
                    self.ckpt_dir / "best.pt",
                    {
                        "step": self.step,
                        "method": self.method.state_dict(),
                        "metrics": scalars,
                        "config": OmegaConf.to_container(self.cfg, resolve=True),
                        "label_space": self.label_space_info(),
                    },
                )
            self.fabric.barrier()

    def evaluate(self, progress: bool = False) -> dict[str, Any]:
        """Evaluate the method's eval model on the validation set, summed over ranks."""
        loader = self.val_loader()
        if loader is None:
            return {}
        ev = self.cfg.eval
        result = evaluate(  # switches the model to eval mode and back
            self.method.eval_model(),
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
        )
        iou = torch.tensor(result["iou"], dtype=torch.float64)
        for name, ids in self.label_space.subsets.items():  # e.g. SYNTHIA's 13 of 16 classes
            result[f"miou_{name}"] = float(torch.nanmean(iou[list(ids)]))
        return result
