"""Which weights a score belongs to: the checkpoint and step `segshift eval` scored, and the
checkpoint behind training's final mIoU.

A run directory holds ``checkpoints/best.pt`` (the step with the best mIoU on ``data.val``
while training; ``best.prev.pt`` is the best before it) and ``latest.pt`` (the last step;
``latest.prev.pt`` the one before). ``segshift eval RUN_DIR`` scores ``best.pt`` when it exists:
a score selected on the same images it reports, so it says so.

Example::

    >>> scored_checkpoint(state, Path("runs/x/checkpoints/best.pt"))["line"]
    'scored runs/x/checkpoints/best.pt (step 400; best.pt: the step with the best mIoU on ...)'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def scored_checkpoint(state: dict[str, Any], origin: Path) -> dict[str, Any]:
    """``checkpoint``, ``step`` (None for official weights) and ``line``, the sentence to print."""
    step = state.get("step")
    info: dict[str, Any] = {"checkpoint": str(origin), "step": step}
    at = f"step {step}" if step is not None else "released weights"
    line = f"scored {origin} ({at})"
    if origin.name == "best.pt":
        latest = origin.with_name("latest.pt")
        line += (
            "; best.pt is the step with the best mIoU on data.val during training, so on the "
            f"same data.val this score is optimistic: {latest} holds the last step"
        )
    info["line"] = line
    return info


def final_miou_line(metrics: dict[str, Any], trainer: Any) -> str:
    """Training's last line: the final evaluation's mIoU (latest.pt) and the best one (best.pt)."""
    line = f"final mIoU: {100 * metrics['miou']:.2f} (checkpoints/latest.pt, step {trainer.step})"
    best = trainer.best
    if best.get("step", -1) >= 0 and best["step"] != trainer.step:
        line += f"; best {100 * best['miou']:.2f} at step {best['step']} (checkpoints/best.pt)"
    return line
