"""Exclusive use of an output store for the whole of a run, and of its resume.

A run holds an OS-level lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on
``<output>.lock``, a file beside the store, from before an old store is replaced until
the store is marked complete or the run stops. The operating system drops the lock when
the process dies, however it dies, so a stale lock never blocks: a second run gets a
one-line error naming the live holder (its pid, host and start, written in the file).

Cluster tasks hold a shared lock on ``<output>.writers`` while they write; a run (or a
resume) that starts while tasks of an earlier, cancelled run still write is refused
until they end.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..core.axes import DenoiseError

__all__ = ["OutputLock", "check_no_writers", "lock_path"]


def lock_path(output: str | os.PathLike, suffix: str = ".lock") -> Path:
    """The lock file of an output store: beside it, named after it."""
    out = Path(output).expanduser().resolve()  # one lock whatever path names the store
    return out.with_name(out.name + suffix)


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # no shared locks on Windows
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int, shared: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class OutputLock:
    """The lock of one output store (a context manager).

    Parameters
    ----------
    output : path
        The output store.
    shared : bool
        A cluster task's shared lock on ``<output>.writers`` instead of the run's
        exclusive one on ``<output>.lock``.
    """

    def __init__(self, output, *, shared: bool = False):
        self.output = Path(output).expanduser().resolve()
        self.shared = shared
        self.path = lock_path(output, ".writers" if shared else ".lock")
        if not self.path.parent.is_dir():
            raise DenoiseError(f"the folder of the output {self.path.parent} does not exist")
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock now, or raise a one-line :class:`DenoiseError` naming its holder."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd, self.shared):
                holder = _holder(fd)
                os.close(fd)
                raise DenoiseError(
                    f"output {self.output} is in use by another run ({holder}); wait for "
                    "it to finish or choose another output"
                )
            try:  # a holder that released removes the file: lock the file that is there
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if not self.shared:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if not self.shared:
            try:
                self.path.unlink()  # while still held: a waiting run locks a new file
            except FileNotFoundError:
                pass
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_no_writers(output) -> None:
    """Refuse (one line) while cluster tasks of an earlier run still write ``output``."""
    path = lock_path(output, ".writers")
    if not path.exists():
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd, shared=False):
            raise DenoiseError(
                f"cluster tasks of an earlier run still write {output}; wait for them to "
                "end (or stop their workers) before running into it again"
            )
        try:
            path.unlink()  # no writer left: tidy up
        except FileNotFoundError:
            pass
        _unlock(fd)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
