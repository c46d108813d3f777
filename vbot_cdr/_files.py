"""Durable files: what makes a rename survive a crash of the machine."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_directory", "sync_file_system"]

#: What a file system answers when it cannot fsync a directory at all (some network and FUSE
#: file systems): the rename is then as durable as that file system makes it.
_CANNOT_FSYNC_DIRECTORIES = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk, so that a rename into it survives a crash.

    A no-op where directories cannot be opened (not POSIX: Windows), or on a file system
    that cannot fsync one.

    Raises:
        OSError: The directory cannot be opened, or the fsync failed (the rename may not
            be durable).
    """
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in _CANNOT_FSYNC_DIRECTORIES:
            raise
    finally:
        os.close(descriptor)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)`` from the C library, if there is one."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # a C library without it
        return None
    return function


def sync_file_system(directory: Path) -> bool:
    """Flush to disk every file of the file system that holds ``directory`` (its data, its
    entries), in one call (Linux's ``syncfs``): where many files were written, far cheaper
    than an fsync each, which commits the file system's journal each time.

    Returns:
        Whether it was done: ``False`` where there is no ``syncfs`` (not Linux), and then the
        caller fsyncs file by file.

    Raises:
        OSError: The directory cannot be opened, or the flush failed.
    """
    syncfs = _syncfs()
    if syncfs is None:
        return False
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        if syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs of {directory}: {os.strerror(code)}")
    finally:
        os.close(descriptor)
    return True
