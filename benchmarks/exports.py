"""The bulk paths against the loops users write by hand: whole processes, side by side.

Usage (from the repository root)::

    python benchmarks/exports.py            # 200,000 calls, 5 repetitions (about 15 minutes)
    python benchmarks/exports.py --quick    # 20,000 calls, 3 repetitions (under two minutes)
    python benchmarks/exports.py --only export,typed,memory --runs 5 --records 200000
    python benchmarks/exports.py --only export --formats jsonl --before /tmp/old-tree

Parts:

- **export**: ``vbot-cdr export --format jsonl|csv|parquet|xlsx`` (a whole process, start-up
  included) against ``exports_hand.py`` (aiohttp ``gather`` + ``orjson.loads``, then the same
  writer, in the export's columns and schema), both writing every call of the fake server
  to a file; client CPU (user + system of the child, from ``wait4``) and peak RSS.
- **typed**: `iter_calls` against the dict loop (``clients.py``, CPU of the stream alone),
  concurrency 1 and 8, and against the typed loop users could write with this stack
  (``hand_typed``: msgspec structs made into `CallRecord` by its ``__init__``).
- **memory**: the peak RSS of `iter_calls` at 100,000 and 1,000,000 calls (``--quick``:
  10,000 and 100,000), and the growth between them.

As ``run.py`` does: the fake server in its own process pinned to the last core, the clients
on the others; each repetition runs every case once, the two clients side by side (which goes
first alternates); ratios are taken inside each repetition and reported as median (min-max).
The load average is printed before and after. Prints a Markdown report; writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from run import HERE, Case, fake_server, measure, pinning

FORMATS = ("jsonl", "csv", "parquet", "xlsx")
#: The hand-written clients of ``clients.py`` (the others are trees of `vbot_cdr`).
HAND = ("hand", "hand_typed")
ROOT = HERE.parent


_SHAPE = """
import base64, json, sys
from vbot_cdr._arrow import arrow_schema
from vbot_cdr._table import CALL_COLUMNS
schema = base64.b64encode(arrow_schema().serialize().to_pybytes()).decode()
columns = [[c.name, c.kind, c.field, c.part] for c in CALL_COLUMNS]
json.dump({"columns": columns, "arrow_schema": schema}, sys.stdout)
"""


def shape_file(directory: Path) -> Path:
    """The columns and the Arrow schema of the export, for ``exports_hand.py``.

    Found by a child process: the peak RSS a child reports starts at its parent's (Linux
    copies it at fork), so this process imports neither pyarrow nor `vbot_cdr`.
    """
    path = directory / "shape.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    path.write_bytes(
        subprocess.run(
            [sys.executable, "-c", _SHAPE], env=env, check=True, capture_output=True
        ).stdout
    )
    return path


def whole_process(
    command: list[str], cores: set[int] | None, env: dict[str, str], cwd: Path
) -> dict[str, float]:
    """Run ``command`` in ``cwd`` to its end; its CPU seconds (user + system), wall seconds,
    peak RSS."""
    if cores is not None:
        command = ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{command} exited with {process.returncode}")
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def rows_in(path: Path, kind: str) -> int:
    if kind == "jsonl":
        with path.open("rb") as file:
            return sum(1 for _ in file)
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig") as file:
            return sum(1 for _ in csv.reader(file)) - 1
    # In a child, so that this process does not import pyarrow (see `shape_file`).
    count = (
        "import pyarrow.parquet as pq, sys; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)"
        if kind == "parquet"
        # A sheet's dimension, less its header row.
        else "import openpyxl, sys; book = openpyxl.load_workbook(sys.argv[1], read_only=True); "
        "print(sum(sheet.max_row - 1 for sheet in book.worksheets))"
    )
    return int(
        subprocess.run(
            [sys.executable, "-c", count, str(path)], check=True, capture_output=True
        ).stdout
    )


def export_once(
    client: str, kind: str, case: Case, server: tuple[str, str], cores: set[int] | None,
    directory: Path, shape: Path, trees: dict[str, Path],
) -> dict[str, float]:  # fmt: skip
    base_url, token = server
    out = directory / f"{client}.{kind}"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(trees.get(client, ROOT))}
    sizes = [f"--page-size={case.page_size}", f"--concurrency={case.concurrency}"]
    if client == "hand":
        command = [
            sys.executable, str(HERE / "exports_hand.py"), kind, base_url, token, str(out),
            f"--shape={shape}", *sizes,
        ]  # fmt: skip
    else:
        env["VBOT_TOKEN"] = token
        command = [
            sys.executable, "-m", "vbot_cdr", "export", "--base-url", base_url, "-q",
            "--format", kind, "-o", str(out), *sizes,
        ]  # fmt: skip
    # In the client's tree: ``python -m`` puts the working directory first on the path,
    # before PYTHONPATH, so a run from another tree would import that tree's vbot_cdr.
    figures = whole_process(command, cores, env, trees.get(client, ROOT))
    written = rows_in(out, kind)
    if written != case.records:
        raise SystemExit(f"{client} {kind} wrote {written} calls, expected {case.records}")
    return figures


def typed_once(
    client: str, case: Case, server: tuple[str, str], cores: set[int] | None,
    trees: dict[str, Path],
) -> dict[str, float]:  # fmt: skip
    """``clients.py`` (CPU of the stream alone), importing ``vbot_cdr`` from the client's tree."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(trees.get(client, ROOT))
    try:
        return measure(client if client in HAND else "iter_calls", case, *server, cores)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--records", type=int)
    parser.add_argument("--only", default="export,typed,memory")
    parser.add_argument("--formats", default=",".join(FORMATS), help="the export's formats")
    parser.add_argument(
        "--before", type=Path, help="a source tree of vbot_cdr to run side by side, as 'before'"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    runs = args.runs or (3 if args.quick else 5)
    records = args.records or (20_000 if args.quick else 200_000)
    typed_records = 10_000 if args.quick else 50_000
    trees = {"library": ROOT}
    if args.before:
        trees["before"] = args.before.resolve()
    clients = ("hand", *trees)
    server_cores, client_cores = pinning()
    print(f"Load average before: {load()}; server on {server_cores}, clients on {client_cores}\n")
    # label -> client -> figures per repetition
    samples: dict[str, dict[str, list[dict[str, float]]]] = {}
    plans: list[tuple[str, str, Case]] = []  # (label, format or "typed", case)
    if "export" in parts:
        case = Case("export", records, 500, 8)
        kinds = args.formats.split(",")
        if unknown := set(kinds) - set(FORMATS):
            parser.error(f"--formats: unknown {sorted(unknown)}; choose among {FORMATS}")
        plans += [(f"export {kind}, {records:,} calls, c8", kind, case) for kind in kinds]
    if "typed" in parts:
        plans += [
            (
                f"iter_calls, {typed_records:,} calls, c{c}",
                "typed",
                Case("cpu", typed_records, 500, c),
            )
            for c in (1, 8)
        ]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        directory = Path(tmp)
        shape = shape_file(directory)
        servers: dict[int, tuple[str, str]] = {}
        for _, _, case in plans:
            if case.records not in servers:
                servers[case.records] = stack.enter_context(fake_server(case, server_cores))
        for repetition in range(runs):
            shift = repetition % max(1, len(plans))
            for label, kind, case in plans[shift:] + plans[:shift]:
                # Which client goes first rotates too.
                here = (*clients, "hand_typed") if kind == "typed" else clients
                turn = repetition % len(here)
                for client in here[turn:] + here[:turn]:
                    server = servers[case.records]
                    if kind == "typed":
                        figures = typed_once(client, case, server, client_cores, trees)
                    else:
                        figures = export_once(
                            client, kind, case, server, client_cores, directory, shape, trees
                        )
                    samples.setdefault(label, {}).setdefault(client, []).append(figures)
            print(f"repetition {repetition + 1}/{runs} done", file=sys.stderr)
    ratios = [(c, "hand") for c in trees] + ([("library", "before")] if args.before else [])
    if "typed" in parts:
        clients += ("hand_typed",)
        ratios += [("hand_typed", "hand"), ("library", "hand_typed")]
    if samples:
        heads = " | ".join(f"{c} CPU s" for c in clients)
        heads += " | " + " | ".join(f"{a} / {b} CPU" for a, b in ratios)
        print(f"| case | {heads} | library / hand wall | peak RSS MiB (library, hand) |")
        print("|---|" + "---:|" * (len(clients) + len(ratios) + 2))
    for label, by_client in samples.items():
        cells = [
            spread([m["cpu_s"] for m in by_client[c]]) if c in by_client else "" for c in clients
        ]
        for a, b in ratios:
            if a not in by_client or b not in by_client:
                cells.append("")
                continue
            pairs = zip(by_client[a], by_client[b], strict=True)
            cells.append(f"**{spread([x['cpu_s'] / y['cpu_s'] for x, y in pairs])}**")
        pairs = zip(by_client["library"], by_client["hand"], strict=True)
        cells.append(spread([x["wall_s"] / y["wall_s"] for x, y in pairs]))
        rss = [
            statistics.median(m["peak_rss_mib"] for m in by_client[c]) for c in ("library", "hand")
        ]
        cells.append(f"{rss[0]:.1f}, {rss[1]:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if "memory" in parts:
        sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
        peaks: dict[tuple[str, int], list[float]] = {}
        for size in sizes:
            case = Case("stream", size, 500, 8)
            with fake_server(case, server_cores) as server:
                for _ in range(min(runs, 3)):
                    for client in trees:
                        figures = typed_once(client, case, server, client_cores, trees)
                        peaks.setdefault((client, size), []).append(figures["peak_rss_mib"])
        print()
        for client in trees:
            small, large = (statistics.median(peaks[client, size]) for size in sizes)
            print(
                f"Peak RSS of iter_calls ({client}): {sizes[0]:,} calls "
                f"{spread(peaks[client, sizes[0]])} MiB, {sizes[1]:,} calls "
                f"{spread(peaks[client, sizes[1]])} MiB: growth **{large / small:.3f}x**"
            )
    print(f"\nLoad average after: {load()}")


if __name__ == "__main__":
    main()
