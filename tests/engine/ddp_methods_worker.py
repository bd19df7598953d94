"""Run under torchrun by test_distributed.py: trains each method named on the command line for
two steps on 2 gloo processes, one after the other in the same process group, so that the
registry costs one launch instead of one per method. Each finished method leaves
``OUT/<method>/done``; a failure stops the launch (torchrun stops every rank). A name
``<method>+classdist`` trains the method with the class-distribution contrast (queue of 64, every
pseudo-labeled pixel counted) and saves each rank's queue to ``OUT/<name>/queue_<rank>.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/helpers.py

import torch  # noqa: E402

from helpers import every_stream, method_overrides  # noqa: E402
from segshift.config import load_config  # noqa: E402
from segshift.engine.trainer import Trainer  # noqa: E402

CLASSDIST = [
    "method.params.classdist.weight=0.1",
    "method.params.classdist.queue=64",
    "method.params.classdist.confidence=0",
]


def overrides(name: str, data: str, out: Path) -> list[str]:
    method, _, variant = name.partition("+")
    return [
        *method_overrides(method),
        *(CLASSDIST if variant == "classdist" else []),
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={out}",
        f"name={name}",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "data.val.batch_size=2",
        "train.iters=2",
        "train.eval_every=0",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.progress=plain",
        "train.accelerator=cpu",
        "train.devices=2",
        "train.strategy=ddp",
        *every_stream(data),
    ]


def main() -> None:
    out, data, *methods = sys.argv[1:]
    for method in methods:
        print(f"=== {method}", flush=True)
        trainer = Trainer(load_config("demo/oracle", overrides(method, data, Path(out))))
        trainer.fit()
        rank = trainer.fabric.global_rank
        if trainer.method.classdist is not None:
            queue = trainer.method.classdist.queue.state_dict()
            torch.save(queue, Path(out) / method / f"queue_{rank}.pt")
        if rank == 0:
            (Path(out) / method / "done").write_text("ok")
        trainer.fabric.barrier()


if __name__ == "__main__":
    main()
