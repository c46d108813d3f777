"""`fsync_directory`: the one fsync of a directory that the state file, the exports and the
recordings share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vbot_cdr._files import fsync_directory

posix_only = pytest.mark.skipif(os.name != "posix", reason="directories are fsynced on POSIX only")


@posix_only
def test_a_directory_is_fsynced(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(b"{}")
    fsync_directory(tmp_path)  # no error: the entry is on disk


@posix_only
def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    """A rename that cannot be made durable says so (the state file reports StateError)."""
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "gone")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs is Linux's")
def test_a_file_system_that_cannot_fsync_directories_is_accepted() -> None:
    """procfs answers EINVAL, as some network and FUSE file systems do: nothing to flush."""
    fsync_directory(Path("/proc"))
