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
    lines = result.stdout.splitlines()
    # the final stage table (the last "# Pipeline" block) and the closing lines
    start = max(i for i, line in enumerate(lines) if line.startswith("# Pipeline"))
    summary = [line for line in lines[start:] if line.startswith("|") and "|---" not in line]
    summary += [line for line in lines if re.search(r"the loop gained|wall time", line)]
    summary = [line.replace(tmp, "<temporary directory>") for line in summary]  # no machine path
    body = "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| wall time (data generation, four trainings, pseudo-labels, evaluations) | {wall:.0f} s |",
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
