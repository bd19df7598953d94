"""Confusion-matrix update speed (Mpixel/s): segshift's bincount vs torchmetrics.

torchmetrics is optional (``pip install torchmetrics``); without it only segshift is measured.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import median, timed, write_result
from segshift.evaluation import ConfusionMatrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--size", default="4x512x1024", help="BxHxW")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    b, h, w = map(int, args.size.split("x"))
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, args.classes, (b, h, w), generator=gen)
    target[torch.rand(b, h, w, generator=gen) < 0.1] = 255
    pred = torch.randint(0, args.classes, (b, h, w), generator=gen)
    target, pred = target.to(args.device), pred.to(args.device)
    mpix = b * h * w / 1e6

    ours = ConfusionMatrix(args.classes, device=args.device)
    rows = [
        (
            "segshift ConfusionMatrix.update",
            median(timed(lambda: ours.update(pred, target), args.repeats)),
        )
    ]
    try:
        from torchmetrics.classification import MulticlassConfusionMatrix

        theirs = MulticlassConfusionMatrix(args.classes, ignore_index=255).to(args.device)
        rows.append(
            (
                "torchmetrics MulticlassConfusionMatrix.update",
                median(timed(lambda: theirs.update(pred, target), args.repeats)),
            )
        )
        ours.reset()
        ours.update(pred, target)
        theirs.reset()
        theirs.update(pred, target)
        same = torch.equal(ours.matrix.cpu(), theirs.compute().cpu().long())
    except ImportError:
        same = None
    lines = [
        f"{args.size} pixels ({mpix:.2f} Mpixel per update), {args.classes} classes, 10% ignore, "
        f"device {args.device}, median of {args.repeats} updates.",
        "",
        "| implementation | ms / update | Mpixel/s |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {1000 * t:.1f} | {mpix / t:.0f} |" for name, t in rows]
    if same is not None:
        lines += ["", f"Matrices identical: {same}"]
    write_result(
        f"confusion_speed_{args.device}", "Confusion-matrix update speed", "\n".join(lines)
    )


if __name__ == "__main__":
    main()
