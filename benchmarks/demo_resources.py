"""Wall time and peak memory of the demo (``segshift demo``), run as a child process.

Peak memory is the largest resident set of the demo process or any one of its loader workers
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), not their sum.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="demo output dir (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or f"{tmp}/demo"
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "segshift.cli", "demo", "--out", out],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = [
        line for line in result.stdout.splitlines() if re.search(r"source-only mIoU|wall", line)
    ]
    body = "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| wall time (data generation, two trainings, evaluations) | {wall:.0f} s |",
            f"| peak resident memory (largest single process) | {peak_mib:.0f} MiB |",
            "",
            "Demo output:",
            "",
            "```",
            *summary,
            "```",
        ]
    )
    write_result("demo_resources", "Demo wall time and peak memory", body)


if __name__ == "__main__":
    main()
