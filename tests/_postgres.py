"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` binaries.

``.ci/run`` starts one and exports its URL as ``VBOT_CDR_TEST_POSTGRES_URL``; without it the
``postgres_url`` fixture starts one the same way, so that ``python -m pytest`` works on a
developer's machine. PostgreSQL refuses to run as root: as root, the cluster runs as
``nobody``, in a directory of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV_URL = "VBOT_CDR_TEST_POSTGRES_URL"


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return versions[-1].parent if versions else None


def server() -> contextlib.AbstractContextManager[str] | None:
    """A PostgreSQL server's URL, as a context manager: CI's (``VBOT_CDR_TEST_POSTGRES_URL``),
    else a throwaway `cluster` of our own; ``None`` when neither can be had (the binaries are
    not installed)."""
    url = os.environ.get(ENV_URL)
    if url:
        return contextlib.nullcontext(url)
    bindir = find_bindir()
    return None if bindir is None else cluster(bindir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def cluster(bindir: Path) -> Iterator[str]:
    """Run a cluster in a new temporary directory and yield its URL; stop and remove it after.

    The directory is right under the system's temporary directory, which ``nobody`` can reach
    (pytest's ``tmp_path`` is private to its user).
    """
    directory = Path(tempfile.mkdtemp(prefix="vbot_cdr_postgres."))
    try:
        with _running(directory, bindir) as url:
            yield url
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _running(directory: Path, bindir: Path) -> Iterator[str]:
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(directory, "nobody")
    data, log = directory / "data", directory / "log"
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run(
        [*as_user, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
        **quiet,  # type: ignore[call-overload]
    )
    port = _free_port()
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start"],
        **quiet,  # type: ignore[call-overload]
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            check=False,
        )
