"""The vbot_cdr benchmark suite: `iter_calls` against the loop users write by hand.

Usage (from the repository root)::

    python benchmarks/run.py            # 10 to 20 minutes; writes RESULTS.md and the plot
    python benchmarks/run.py --quick    # under two minutes, smaller sizes; writes nothing

How it measures:

- Every measurement is a fresh client process (``clients.py``): `iter_calls`, or the aiohttp
  ``gather`` under a semaphore with ``orjson.loads`` into dicts that users write by hand.
- The fake server (``fake_server.py``) runs in its own process. With two cores or more, the
  server is pinned to one and the client to another, so the client's CPU time is its own
  and the two do not take turns on one core.
- Repetitions are interleaved: each repetition runs every case once, both clients side by
  side, starting with a different case each time; a ratio is taken between the two clients
  *inside* each repetition, then the median of those ratios is reported with its min and max.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
CLIENTS = ("iter_calls", "hand")


@attrs.frozen
class Case:
    """One workload: a server (records, latency) and a client setting, run by both clients."""

    part: str
    records: int
    page_size: int
    concurrency: int
    latency: float = 0.0

    @property
    def label(self) -> str:
        latency = f", {self.latency * 1000:g} ms" if self.latency else ""
        return f"{self.records:,} records / {self.page_size}, c{self.concurrency}{latency}"


def plan(quick: bool) -> list[Case]:
    """The cases of each part (smaller in quick mode)."""
    cpu_records = 10_000 if quick else 50_000
    sizes = (10_000, 40_000) if quick else (100_000, 1_000_000)
    rounds = 3 if quick else 8  # rounds of latency per run in the 100 ms sweep
    sweep = (1, 8, 64) if quick else (1, 4, 16, 64)
    cases = [Case("cpu", cpu_records, 500, c) for c in (1, 8)]
    cases += [Case("stream", size, 500, 8) for size in sizes]
    # Latency cases end on a half-full page, so both clients need the same rounds (with an
    # exact multiple, iter_calls also asks the page after the last in case records shifted).
    pages = 64 if quick else 256
    cases.append(Case("latency", pages * 100 - 50, 100, 64, latency=0.02))
    cases += [Case("sweep", rounds * c * 20 - 10, 20, c, latency=0.1) for c in sweep]
    return cases


def pinning() -> tuple[set[int] | None, set[int] | None]:
    """The cores of the server and of the clients: apart when there are two or more."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[-1]}, set(cores[:-1])


@contextmanager
def fake_server(case: Case, cores: set[int] | None) -> Iterator[tuple[str, str]]:
    """Start ``fake_server.py`` for ``case`` in its own process; yield ``(base_url, token)``."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "fake_server.py"),
            f"--count={case.records}",
            f"--latency={case.latency}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if cores is not None:
            os.sched_setaffinity(process.pid, cores)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the fake server did not start")
        info = json.loads(line)
        yield info["base_url"], info["token"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(
    client: str, case: Case, base_url: str, token: str, cores: set[int] | None
) -> dict[str, float]:
    """One fresh client process streaming ``case``; its figures (see ``clients.py``)."""
    command = [
        sys.executable,
        str(HERE / "clients.py"),
        client,
        base_url,
        token,
        f"--page-size={case.page_size}",
        f"--concurrency={case.concurrency}",
        f"--expect={case.records}",
    ]
    if cores is not None:
        command = ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def run_cases(cases: list[Case], runs: int) -> dict[Case, dict[str, list[dict[str, float]]]]:
    """Every case ``runs`` times, repetitions interleaved; each case's server started once."""
    server_cores, client_cores = pinning()
    samples: dict[Case, dict[str, list[dict[str, float]]]] = {
        case: {client: [] for client in CLIENTS} for case in cases
    }
    with _servers(cases, server_cores) as servers:
        for repetition in range(runs):
            shift = repetition % len(cases)
            for case in cases[shift:] + cases[:shift]:
                base_url, token = servers[case]
                # Which client goes first alternates too.
                order = CLIENTS if repetition % 2 == 0 else CLIENTS[::-1]
                for client in order:
                    samples[case][client].append(
                        measure(client, case, base_url, token, client_cores)
                    )
            print(f"repetition {repetition + 1}/{runs} done", file=sys.stderr)
    return samples


@contextmanager
def _servers(cases: list[Case], cores: set[int] | None) -> Iterator[dict[Case, tuple[str, str]]]:
    """One fake server per distinct (records, latency), shared by the cases that need it."""
    with ExitStack() as stack:
        by_shape: dict[tuple[int, float], tuple[str, str]] = {}
        servers = {}
        for case in cases:
            shape = (case.records, case.latency)
            if shape not in by_shape:
                by_shape[shape] = stack.enter_context(fake_server(case, cores))
            servers[case] = by_shape[shape]
        yield servers


# -- figures -------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(
    samples: dict[Case, dict[str, list[dict[str, float]]]],
) -> list[dict[str, Any]]:
    """Per case: each client's CPU per record, records/s, wall and peak RSS, and the ratios
    of `iter_calls` over the hand loop taken inside each repetition."""
    rows = []
    for case, by_client in samples.items():
        row: dict[str, Any] = {**attrs.asdict(case), "label": case.label}
        for client, runs in by_client.items():
            row[client] = {
                "cpu_us_per_record": spread([r["cpu_s"] / case.records * 1e6 for r in runs]),
                "records_per_s": spread([case.records / r["wall_s"] for r in runs]),
                "wall_s": spread([r["wall_s"] for r in runs]),
                "peak_rss_mib": spread([r["peak_rss_mib"] for r in runs]),
            }
        mine, hand = by_client["iter_calls"], by_client["hand"]
        row["ratio"] = {
            "cpu": spread([a["cpu_s"] / b["cpu_s"] for a, b in zip(mine, hand, strict=True)]),
            "wall": spread([a["wall_s"] / b["wall_s"] for a, b in zip(mine, hand, strict=True)]),
            # records/s of iter_calls over the hand loop's: the inverse of the wall ratio
            "records_per_s": spread(
                [b["wall_s"] / a["wall_s"] for a, b in zip(mine, hand, strict=True)]
            ),
        }
        rows.append(row)
    return rows


def fmt(figure: dict[str, float], spec: str = ".2f") -> str:
    return f"{figure['median']:{spec}} ({figure['min']:{spec}}-{figure['max']:{spec}})"


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """One line per goal of issue 13, with the measured figure and whether it is met."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = []
    for row in (r for r in rows if r["part"] == "cpu"):
        ratio = row["ratio"]["cpu"]["median"]
        lines.append(
            f"- Client CPU per record, concurrency {row['concurrency']}, <= 1.1x the hand loop: "
            f"{ratio:.2f}x, {verdict(ratio <= 1.1)}."
        )
    stream = [r for r in rows if r["part"] == "stream"]
    if stream:
        big, small = stream[-1], stream[0]
        ratio = big["ratio"]["records_per_s"]["median"]
        lines.append(
            f"- Records/s over {big['records']:,} records >= 0.9x the hand loop: {ratio:.2f}x, "
            f"{verdict(ratio >= 0.9)}."
        )
        growth = (
            big["iter_calls"]["peak_rss_mib"]["median"]
            / small["iter_calls"]["peak_rss_mib"]["median"]
        )
        lines.append(
            f"- Peak memory of `iter_calls` flat from {small['records']:,} to "
            f"{big['records']:,} records (<= 1.2x): {growth:.2f}x, {verdict(growth <= 1.2)}."
        )
    for row in (r for r in rows if r["part"] == "latency"):
        ratio = row["ratio"]["wall"]["median"]
        lines.append(
            f"- Wall time at {row['latency'] * 1000:g} ms, concurrency {row['concurrency']}, "
            f"<= 1.1x the hand loop: {ratio:.2f}x, {verdict(ratio <= 1.1)}."
        )
    sweep = [r for r in rows if r["part"] == "sweep"]
    if sweep:
        worst = max(r["ratio"]["wall"]["median"] for r in sweep)
        lines.append(
            f"- Wall time at 100 ms within 5 % of the hand loop at every concurrency: worst "
            f"{worst:.3f}x, {verdict(worst <= 1.05)}."
        )
    return lines


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The figures of every case, medians with (min-max)."""
    lines = [
        "| part | case | client | CPU us / record | records/s | wall (s) | peak RSS (MiB) "
        "| iter_calls / hand: CPU | wall |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        for client in CLIENTS:
            c = row[client]
            ratios = (
                f"| **{fmt(row['ratio']['cpu'])}** | **{fmt(row['ratio']['wall'])}** |"
                if client == "iter_calls"
                else "| | |"
            )
            lines.append(
                f"| {row['part']} | {row['label']} | {client} | {fmt(c['cpu_us_per_record'])} "
                f"| {fmt(c['records_per_s'], ',.0f')} | {fmt(c['wall_s'], '.3f')} "
                f"| {fmt(c['peak_rss_mib'], '.1f')} {ratios}"
            )
    return lines


def machine() -> dict[str, str]:
    cpu_model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    packages = ("aiohttp", "attrs", "cattrs", "orjson", "msgspec")
    server_cores, client_cores = pinning()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu_model}, {os.cpu_count()} cores",
        "pinning": (
            f"server on core {sorted(server_cores)}, clients on {sorted(client_cores)}"
            if server_cores and client_cores
            else "not pinned (one core)"
        ),
        "load": "load average before the run: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(f"{name} {version(name)}" for name in packages),
    }


def report(results: dict[str, Any]) -> str:
    """The Markdown report (RESULTS.md in a full run)."""
    m, rows = results["machine"], results["rows"]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Measured {m['date']} by `python benchmarks/run.py"
            + (" --quick" if results["quick"] else "")
            + f"`: {results['runs']} interleaved repetitions, each measurement a fresh client "
            "process; medians with (min-max); each ratio is `iter_calls` over the hand loop "
            "in the same repetition.",
            "",
            f"- Machine: {m['cpu']}; {m['os']}; {m['python']}; {m['pinning']}; {m['load']}",
            f"- Packages: {m['packages']}",
            "",
            "## Goals (issue 13)",
            "",
            *goals(rows),
            "",
            "## Figures",
            "",
            "*hand* is the loop users write: aiohttp `gather` of every page under a semaphore, "
            "each page decoded with `orjson.loads` into dicts. *cpu*: zero latency, client CPU "
            "per record. *stream*: zero latency, records per second and peak memory. "
            "*latency* and *sweep*: the fake server waits that long before each answer.",
            "",
            *table(rows),
            "",
        ]
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Records per second of both clients: the 100 ms sweep, and the zero-latency streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    sweep = [r for r in rows if r["part"] == "sweep"]
    xs = [r["concurrency"] for r in sweep]
    for client, style in (("iter_calls", "o-"), ("hand", "s:")):
        left.plot(xs, [r[client]["records_per_s"]["median"] for r in sweep], style, label=client)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(xs, [str(x) for x in xs])
    left.set_xlabel("concurrency (requests in flight)")
    left.set_ylabel("records per second")
    left.set_title("100 ms per request, pages of 20")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    zero = [r for r in rows if r["part"] in ("cpu", "stream")]
    labels = [r["label"].replace(" records / ", "\n/ ") for r in zero]
    width = 0.38
    for offset, client in ((-width / 2, "iter_calls"), (width / 2, "hand")):
        right.bar(
            [i + offset for i in range(len(zero))],
            [r[client]["records_per_s"]["median"] for r in zero],
            width,
            label=client,
        )
    right.set_xticks(range(len(zero)), labels, fontsize=7)
    right.set_ylabel("records per second")
    right.set_title("zero latency")
    right.legend()
    fig.suptitle("iter_calls against the hand-written aiohttp + orjson gather loop")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions (default 5; quick 3)")
    parser.add_argument("--quick", action="store_true", help="under two minutes; writes nothing")
    parser.add_argument("--only", help="comma-separated parts: cpu,stream,latency,sweep (all)")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md goes")
    args = parser.parse_args()
    runs = min(args.runs, 3) if args.quick else args.runs
    cases = plan(args.quick)
    if args.only:
        cases = [case for case in cases if case.part in args.only.split(",")]
    results = {"runs": runs, "quick": args.quick, "machine": machine()}
    results["rows"] = summarize(run_cases(cases, runs))
    text = report(results)
    print(text)
    if not (args.quick or args.only):
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "RESULTS.md").write_text(text)
        plot(results["rows"], args.out / "throughput.png")


if __name__ == "__main__":
    main()
