"""Run logs: one JSON object per line, TensorBoard scalars, and a progress display.

On a terminal the progress is a tqdm bar; otherwise (CI, ``nohup``, a pipe) plain lines every
``log_every`` steps, so log files stay readable.

A resumed run re-runs the steps after its checkpoint; :func:`drop_records_after` removes their
earlier records from ``log.jsonl`` first (and TensorBoard purges them with ``purge_step``), so
each step is logged once.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from segshift.fileio import atomic_write_bytes


def drop_records_after(path: str | Path, step: int, *, evals_from: int | None = None) -> int:
    """Rewrite ``log.jsonl`` without the records of steps after ``step`` (and without the eval
    records of steps >= ``evals_from``, an evaluation that is to be re-run); return how many
    records went. Lines that are not JSON (a line cut by a kill) go too."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            record_step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        rerun_eval = evals_from is not None and record.get("kind") == "eval"
        if record_step > step or (rerun_eval and record_step >= evals_from):
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
    return dropped


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Writes ``log.jsonl`` and TensorBoard events under a run directory (rank 0 only)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        enabled: bool = True,
        total_iters: int = 0,
        start_step: int = 0,
        progress: str = "auto",
        tensorboard: bool = True,
        purge_step: int | None = None,
    ) -> None:
        """``purge_step``: TensorBoard hides the events at and after it (re-run steps)."""
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._jsonl = None
        self._tb = None
        self._bar = None
        self._start_time = time.time()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "log.jsonl", "a", buffering=1)  # noqa: SIM115
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        use_bar = progress == "bar" or (progress == "auto" and sys.stderr.isatty())
        if use_bar:
            self._bar = tqdm(total=total_iters, initial=start_step, dynamic_ncols=True)

    def log(self, step: int, values: dict[str, Any], *, kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, "time": round(time.time() - self._start_time, 3)}
        record.update({k: _plain(v) for k, v in values.items()})
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("step", "kind", "time") and isinstance(value, int | float):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)
        shown = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in record.items()
            if k not in ("step", "kind", "time")
        )
        self.message(f"[{kind}] step {step}: {shown}")

    def image(self, tag: str, image: Any, step: int) -> None:
        """An (H, W, 3) uint8 image to TensorBoard (sample grids of image translation)."""
        if self._tb is not None:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
        self._bar = self._tb = self._jsonl = None
