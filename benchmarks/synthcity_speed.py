"""synthcity generation speed (images/s) per style and size, one process."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result
from segshift.data.synthcity import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--sizes", default="128x160,360x480")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        h, w = map(int, size.split("x"))
        for style in ("sim", "photo"):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                generate(
                    Path(tmp) / style,
                    style=style,
                    n=args.n,
                    size=(h, w),
                    seed=0,
                    workers=args.workers,
                )
                rate = args.n / (time.perf_counter() - start)
            rows.append(f"| {style} | {h} x {w} | {rate:.1f} |")
    body = "\n".join(
        [
            f"{args.n} images per row, written to disk (PNG image + mask), {args.workers} worker(s).",
            "",
            "| style | size | images / s |",
            "|---|---|---|",
            *rows,
        ]
    )
    write_result("synthcity_speed", "synthcity generation speed", body)


if __name__ == "__main__":
    main()
