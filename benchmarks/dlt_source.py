"""The dlt source (`vbot_cdr.dlt.vbot_source`) against dlt's own ``rest_api`` source.

Usage (from the repository root)::

    python benchmarks/dlt_source.py --calls 20000 --runs 3 --latencies 0,0.1 --before /tmp/main

Each measurement is a whole process (this script with ``--client``) that runs one dlt
pipeline, every call of the fake server, into a new DuckDB file with ``write_disposition
"merge"`` on ``trans_id`` and a ``create_at`` cursor, then checks the rows loaded:

- **vbot_cdr**: ``vbot_source(token, base_url, start_date=..., client_options={"page_size":
  500})`` (the client's default concurrency, 8; the default one-day windows);
- **rest_api**: ``rest_api_source`` on ``getAll`` with a bearer token, the ``page_number``
  paginator (pages of 500, stop after the empty page), ``data_selector "data"`` and an
  incremental cursor on ``create_at``: how dlt's documentation has users load an API. It
  reads page after page, and lets dlt infer the types and unnest the records (``member`` into
  columns, ``call_collected_data`` into a child table).

As ``exports.py`` does: the fake server (``fake_server.py``, one per latency) in its own
process pinned to the last core, the clients on the others; client CPU (user + system, from
``wait4``, dlt's threads and children included) and wall time; repetitions interleaved,
ratios taken inside each, median (min-max). ``--before TREE`` adds `vbot_source` from another
source tree (main). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GET_ALL = "/api/campaignCall/cdr/getAll"
PAGE_SIZE = 500
#: The fake's first call (`vbot_cdr.testing._data.DEFAULT_START`), less a day.
START = 1_764_547_200 - 86_400


def run_client(client: str, base_url: str, token: str, directory: Path) -> int:
    """One pipeline run of ``client``'s source into ``directory``; the calls loaded."""
    os.environ["DLT_DATA_DIR"] = str(directory / "dlt")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt

    source: Any
    if client == "rest_api":
        from dlt.sources.rest_api import rest_api_source

        source = rest_api_source(
            {
                "client": {
                    "base_url": base_url,
                    "auth": {"type": "bearer", "token": token},
                    "paginator": {
                        "type": "page_number",
                        "base_page": 1,
                        "page_param": "page",
                        "total_path": None,
                        "stop_after_empty_page": True,
                    },
                },
                "resource_defaults": {"primary_key": "trans_id", "write_disposition": "merge"},
                "resources": [
                    {
                        "name": "calls",
                        "endpoint": {
                            "path": GET_ALL,
                            "params": {"size": PAGE_SIZE},
                            "data_selector": "data",
                            "incremental": {"cursor_path": "create_at", "initial_value": START},
                        },
                    }
                ],
            },
            name="vbot",
        )
    else:
        from vbot_cdr.dlt import vbot_source

        source = vbot_source(
            token, base_url, start_date=START, client_options={"page_size": PAGE_SIZE}
        )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{client}",
        pipelines_dir=str(directory / "pipelines"),
        destination=dlt.destinations.duckdb(str(directory / "calls.duckdb")),
        dataset_name="vbot",
    )
    pipeline.run(source)
    with pipeline.sql_client() as sql:
        ((count,),) = sql.execute_sql("SELECT count(*) FROM calls")
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latencies", default="0,0.1", help="seconds per request, a list")
    parser.add_argument(
        "--before", type=Path, help="a source tree of vbot_cdr to run side by side, as 'before'"
    )
    args = parser.parse_args()
    if args.client:
        loaded = run_client(args.client, args.base_url, args.token, args.dir)
        if loaded != args.expect:
            raise SystemExit(f"{args.client} loaded {loaded} calls, expected {args.expect}")
        print(json.dumps({"calls": loaded}))
        return
    sys.path.insert(0, str(HERE))
    from exports import load, spread, whole_process
    from run import Case, fake_server, pinning

    trees = {"library": HERE.parent}
    if args.before:
        trees["before"] = args.before.resolve()
    clients = ("rest_api", *trees)
    server_cores, client_cores = pinning()
    print(f"Load average before: {load()}; server on {server_cores}, clients on {client_cores}\n")
    samples: dict[tuple[float, str], list[dict[str, float]]] = {}
    latencies = [float(x) for x in args.latencies.split(",")]
    for latency in latencies:
        case = Case("dlt", args.calls, PAGE_SIZE, 8, latency=latency)
        with fake_server(case, server_cores) as (base_url, token):
            for repetition in range(args.runs):
                turn = repetition % len(clients)
                for client in clients[turn:] + clients[:turn]:
                    tree = trees.get(client, HERE.parent)
                    with tempfile.TemporaryDirectory() as tmp:
                        command = [
                            sys.executable, __file__, "--client",
                            "rest_api" if client == "rest_api" else "vbot_cdr",
                            "--base-url", base_url, "--token", token, "--dir", tmp,
                            "--expect", str(args.calls),
                        ]  # fmt: skip
                        env = {**os.environ, "PYTHONPATH": str(tree)}
                        figures = whole_process(command, client_cores, env, tree)
                    samples.setdefault((latency, client), []).append(figures)
                print(f"latency {latency}: repetition {repetition + 1} done", file=sys.stderr)
    pairs_of = [(c, "rest_api") for c in trees] + ([("library", "before")] if args.before else [])
    heads = " | ".join(f"{c} CPU s" for c in clients)
    heads += " | " + " | ".join(f"{a} / {b} CPU" for a, b in pairs_of)
    heads += " | " + " | ".join(f"{c} wall s" for c in clients)
    heads += " | " + " | ".join(f"{a} / {b} wall" for a, b in pairs_of)
    print(f"| {args.calls:,} calls, latency | {heads} |")
    print("|---|" + "---:|" * (2 * (len(clients) + len(pairs_of))))
    for latency in latencies:
        cells = []
        for measure in ("cpu_s", "wall_s"):
            by = {c: samples[latency, c] for c in clients}
            cells += [spread([m[measure] for m in by[c]]) for c in clients]
            for a, b in pairs_of:
                pairs = zip(by[a], by[b], strict=True)
                cells.append(f"**{spread([x[measure] / y[measure] for x, y in pairs])}**")
        print(f"| {latency * 1000:g} ms | " + " | ".join(cells) + " |")
    print(f"\nLoad average after: {load()}")


if __name__ == "__main__":
    main()
