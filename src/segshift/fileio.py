"""All-or-nothing file writes: a temp file beside the target, fsynced, then ``os.replace``.

A crash or a full disk at any point leaves either the old file or the new one, never half of one.
A process killed with SIGKILL can leave its temp file (``.<name>.<random>.tmp``) behind;
:func:`remove_stale_temp_files` clears them (the trainer does so at start-up, holding the run's
lock). Files get the mode the user's umask gives a new file (``0666 & ~umask``), not mkstemp's
0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from segshift.errors import TrainingError, WriteError


class RunLockedError(TrainingError):
    """The directory is locked by another running process."""


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (threads may be writing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic read-by-setting, restored at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """What ``open(path, "w")`` would give a new file: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def remove_stale_temp_files(*directories: Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files left by killed :func:`atomic_write` calls; return them.

    Only call this while no other process can be writing into ``directories`` (the trainer
    holds the run directory's lock).
    """
    removed = []
    for directory in directories:
        if not Path(directory).is_dir():
            continue
        for tmp in Path(directory).glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def check_output_directory(option: str, path: str | os.PathLike) -> Path:
    """``path`` as a directory to write into: a WriteError naming ``option`` when it, or its
    nearest existing parent, is a file (checked before any work, so nothing is lost)."""
    path = Path(path).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise WriteError(20, f"{option} {path}: {existing} exists and is not a directory")
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], None],
    keep_previous: Path | None = None,
    durable: bool = True,
) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it and rename it into place.

    With ``keep_previous``, an existing ``path`` is first renamed there, so that at every instant
    either the new or the previous version is complete on disk. ``durable=False`` skips the
    fsyncs (still atomic for readers; for regenerable files written by the thousand).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp creates 0600; respect the user's umask
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, WriteError):
            raise
        reason = err.strerror or str(err)
        raise WriteError(
            err.errno, f"cannot write {path}: {reason} (what was written before is intact)"
        ) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data), durable=durable)


class DirectoryLock:
    """An exclusive lock on a directory (``<dir>/.lock``, ``fcntl.flock``), held by one process.

    The kernel drops a flock when its process dies, however it dies, so a lock file left by a
    killed process never blocks: the next owner takes it over, and :meth:`acquire` says whose it
    was. The file holds ``"<pid> <host>"`` while locked and is emptied on release (not deleted:
    deleting would let two processes lock two different files of the same name).

    ``acquire(reentrant=True)`` lets later locks of the same process on the same directory enter
    (nested, a no-op) instead of being refused: a cluster job holds its run directory from
    start to end, and the training it runs in-process takes the lock again
    (``segshift.pipeline.launch``).
    """

    # (st_dev, st_ino) of the lock files this process holds with reentrant=True
    _reentrant: dict[tuple[int, int], DirectoryLock] = {}

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self._nested = False

    def acquire(self, reentrant: bool = False) -> str | None:
        """Take the lock or raise `RunLockedError` naming the holder; returns a note when a lock
        left behind by a dead process was taken over, else None."""
        import fcntl
        import socket

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, new_file_mode())
        except OSError as err:
            raise self._write_error(err) from None
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in DirectoryLock._reentrant:  # held by this process for what it runs
            os.close(fd)
            self._nested = True
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.path.read_text().strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"{self.directory} is in use by process {holder} (lock {self.path}): two "
                "trainings on one run directory would interleave their files. Wait for it to "
                "finish or stop it, or train into another directory (name=... / output_dir=...)"
            ) from None
        left = os.pread(fd, 256, 0).decode(errors="replace").strip()
        mine = f"{os.getpid()} {socket.gethostname()}"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (mine + "\n").encode(), 0)
        except OSError as err:  # a full disk: give the lock back, nothing else was written
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise self._write_error(err) from None
        self._fd = fd
        if reentrant:
            self._key = key
            DirectoryLock._reentrant[key] = self
        if left and left != mine:
            return (
                f"took over the lock {self.path} left by process {left}, which no longer runs "
                "(it was killed or crashed)"
            )
        return None

    def _write_error(self, err: OSError) -> WriteError:
        reason = err.strerror or str(err)
        return WriteError(err.errno, f"cannot lock {self.directory} ({self.path}): {reason}")

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        if self._fd is None:
            return
        import fcntl

        if self._key is not None:
            DirectoryLock._reentrant.pop(self._key, None)
            self._key = None
        try:
            os.ftruncate(self._fd, 0)  # released cleanly: the next owner has nothing to report
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(directory: str | os.PathLike) -> str | None:
    """``"<pid> <host>"`` of the live process holding ``directory``'s `DirectoryLock`, else None.

    Probes with a non-blocking flock taken and dropped at once (the file is not changed); a
    process acquiring the lock in that instant is refused, so callers that start jobs retry
    (``segshift.pipeline.launch``). Across machines this is as reliable as flock on the shared
    file system (NFS: yes; Lustre: with the ``flock`` mount option).
    """
    import fcntl

    path = Path(directory) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
