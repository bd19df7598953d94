"""CPU threads: how many a training process computes with, and one per data-loading worker.

``train.threads`` (or the environment variable ``SEGSHIFT_THREADS``, which wins) is a number or
``auto``. ``auto`` keeps PyTorch's own count (``OMP_NUM_THREADS`` when set, else the physical
cores), capped at the cores this process may use divided by the training processes on the node,
so several processes never share one core's worth of threads. Each loader worker computes with one
thread (PyTorch's and OpenCV's), so workers add processes, not thread pools.

OpenCV runs single-threaded in the training process too: parallel data loading comes from the
workers, and OpenCV's pool cannot be resized safely in a forked worker (``cv2.setNumThreads``
there deadlocks once the parent's pool has run: reproduced with a 2-thread parent, one worker).
So the parent sets 1 before any worker forks, and a forked worker inherits it without a call.

Why it matters: on a busy 2-core machine a demo training step took 3.7-4.2 s with PyTorch's
default threads and 0.9 s with one (threads spin waiting for a core another program holds); on an
idle machine the default is faster (40 demo steps: 29 s against 42 s with one thread). Example::

    message = setup_threads("auto")   # "threads: 2 (auto: 2 cores)"
    SEGSHIFT_THREADS=1 segshift train my.yaml
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import cv2
import torch

from segshift.errors import ConfigError

THREADS_ENV = "SEGSHIFT_THREADS"
_OPENCV_SET_BY_PARENT = False


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _parse(value: object, where: str) -> int | None:
    """A thread count >= 1, or None for ``auto``; a ConfigError naming ``where`` otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f'{where}: expected an integer >= 1 or "auto", got {value!r}')


def choose_threads(
    setting: object, processes: int = 1, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """The thread count for ``setting`` (``train.threads``) and how it was chosen.

    ``processes``: training processes sharing this machine's cores (DDP on one node). Returns e.g.
    ``(2, "auto: 2 cores")``, ``(1, "SEGSHIFT_THREADS=1")`` or ``(4, "train.threads")``.
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get(THREADS_ENV, "").strip()
    if from_env:
        setting, where = from_env, THREADS_ENV
    else:
        where = "train.threads"
    count = _parse(setting, where)
    if count is not None:
        return count, f"{THREADS_ENV}={count}" if where == THREADS_ENV else where
    cores = available_cores()
    share = max(1, cores // max(1, processes))
    count = min(torch.get_num_threads(), share)
    per_process = f", {processes} processes" if processes > 1 else ""
    return count, f"auto: {cores} cores{per_process}"


def setup_threads(
    setting: object, processes: int = 1, environ: Mapping[str, str] | None = None
) -> str:
    """Set PyTorch's (and OpenCV's) thread count as :func:`choose_threads` says; return the line
    to print at start-up, e.g. ``"threads: 2 (auto: 2 cores)"``."""
    count, how = choose_threads(setting, processes, environ)
    global _OPENCV_SET_BY_PARENT
    torch.set_num_threads(count)
    cv2.setNumThreads(1)  # see the module docstring
    _OPENCV_SET_BY_PARENT = True  # a forked worker inherits this flag, a spawned one does not
    if count != torch.get_num_interop_threads():
        # possible once per process, before any inter-op work; the intra-op threads are what a
        # training step spends, so a process whose inter-op pool is fixed already keeps it
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(count)
    return f"threads: {count} ({how})"


def limit_worker_threads(_worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader: one compute thread per worker process. OpenCV's
    count is only set in a worker that did not fork from a process :func:`setup_threads` ran in
    (a spawned worker starts a fresh OpenCV; a forked one inherits 1 and must not touch it)."""
    torch.set_num_threads(1)
    if not _OPENCV_SET_BY_PARENT:
        cv2.setNumThreads(1)
