"""Durable files: what makes a rename survive a crash of the machine."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["fsync_directory", "fsync_file"]

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


def fsync_file(path: Path) -> None:
    """Flush the file at ``path`` to disk, through a descriptor of its own (any descriptor
    of a file flushes it); a file gone meanwhile is not an error (it was replaced, and its
    replacement is flushed in turn).

    Raises:
        OSError: It cannot be opened or flushed.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
