"""Rows/s into each database sink, next to a plain bulk load of the same rows (the floor).

Part 1, per backend (SQLite, DuckDB, PostgreSQL), ``--rows`` calls, ``--runs`` repetitions,
each into a fresh database, sink and floor side by side in the same repetition:

- **sink, insert**: what `sync_to_database` does with a window of calls: ``Database.upsert``
  of the `CallRecord`s in batches (each record turned into the driver's values, then
  PostgreSQL: COPY into a temporary table + INSERT ... ON CONFLICT; DuckDB: a JSON file of a
  list per column + read_json + unnest + INSERT ... ON CONFLICT; SQLite: executemany of
  INSERT ... ON CONFLICT; the timestamps computed by the database), then the state row and
  COMMIT;
- **sink, update**: the same calls again into the full table (every row conflicts, as the
  lookback or ``--reset`` makes them);
- **floor**: the same rows, built beforehand (untimed) from ``CallRecord.to_dict()`` as the
  driver takes them (timestamps as datetimes, ISO 8601 text in SQLite; JSON as text, as
  objects in DuckDB's JSON file), bulk loaded into an empty table of the same columns and
  key, the plain way with the same driver (PostgreSQL COPY, DuckDB read_json of a JSON file,
  SQLite executemany), then COMMIT. Building the rows is not in the floor: it is the bare
  load.

The last column takes out the time of turning the records into the driver's values alone
(measured in the same repetition): what the load costs over the floor once the rows exist.

Part 2: is the sink the bottleneck of a sync? A fake server in its own process answers every
request after 50 ms; a sync with a state file that drops the records (the reads alone) runs
side by side with `sync_to_database` into each backend, over the same calls and windows.

Part 3 (``--only whole``), the goal of issue 21: ``vbot-cdr sync --to URL`` as a whole
process (one window: ``--window 400d``; pages of 500, concurrency 8) against
``sinks_hand.py``, the load users write by hand (aiohttp ``gather`` + ``orjson``, a row per
call in the table's columns, then the driver's ``executemany``, or DuckDB's insert of an
Arrow table), each into a fresh database, every call of the fake server (``--calls``). As
``exports.py`` does: the server in its own process pinned to the last core, the clients on
the others, client CPU (user + system, from ``wait4``), repetitions interleaved and ratios
taken inside each; ``--before TREE`` adds ``vbot-cdr sync`` from another source tree (main).

PostgreSQL comes from ``VBOT_CDR_TEST_POSTGRES_URL``, else a throwaway cluster is started
(see tests/_postgres.py). Usage: python benchmarks/sinks.py [--rows 50000] [--runs 3]
[--only insert,sync,whole] [--calls 50000] [--before TREE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import _postgres
from vbot_cdr import CallFilter, CallRecord, VBotClient, sync_to_database
from vbot_cdr._decoding import structure_records
from vbot_cdr._models import epoch_to_datetime
from vbot_cdr._sinks._backends import open_database, quote
from vbot_cdr._sinks._columns import KEY, RECORD_COLUMNS
from vbot_cdr._sinks._load import BATCH_ROWS
from vbot_cdr._sinks._url import parse_database_url
from vbot_cdr.testing._data import DEFAULT_START, RecordGenerator

BACKENDS = ("sqlite", "duckdb", "postgresql")


def make_records(count: int) -> list[CallRecord]:
    generator = RecordGenerator(seed=1)
    return structure_records([generator.record(i) for i in range(count)])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    started = _postgres.server()
    if started is None:
        sys.exit("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
    with started as url:
        yield url


def fresh_database(backend: str, directory: Path, postgres: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        return str(directory / f"{name}.db")
    if backend == "duckdb":
        return str(directory / f"{name}.duckdb")
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    return postgres.rsplit("/", 1)[0] + f"/{name}"


def sink_load(url: str, records: Sequence[CallRecord]) -> float:
    """Seconds to load ``records`` as `sync_to_database` does, state and COMMIT included."""
    database = open_database(parse_database_url(url), "vbot_calls", RECORD_COLUMNS)
    try:
        started = time.perf_counter()
        for at in range(0, len(records), BATCH_ROWS):
            batch = records[at : at + BATCH_ROWS]
            database.upsert(RECORD_COLUMNS, batch)
        database.commit_with_state("sha256:bench", "{}")
        return time.perf_counter() - started
    finally:
        database.close()


def building(url: str, records: Sequence[CallRecord]) -> float:
    """Seconds the sink spends turning ``records`` into the driver's values, alone."""
    database = open_database(parse_database_url(url), "vbot_building", RECORD_COLUMNS)
    try:
        encode = database.encoder(RECORD_COLUMNS)
        started = time.perf_counter()
        for record in records:
            encode(record)
        return time.perf_counter() - started
    finally:
        database.close()


def floor_rows(records: Sequence[CallRecord], backend: str) -> list[dict[str, Any]]:
    """The rows a user builds from ``to_dict()`` for the calls table, as the driver takes them."""
    rows = []
    for record in records:
        data = record.to_dict()
        row: dict[str, Any] = {}
        for column in RECORD_COLUMNS:
            value = data.get(column.field)
            if column.part is not None:
                value = None if value is None else value.get(column.part)
            elif column.kind == "timestamp":
                value = epoch_to_datetime(value)
                if backend == "sqlite" and value is not None:
                    value = value.isoformat()
            elif column.kind == "json" and backend != "duckdb" and value is not None:
                value = orjson.dumps(value).decode()
            row[column.name] = value
        rows.append(row)
    return rows


def floor_load(url: str, records: Sequence[CallRecord]) -> float:
    """Seconds of a plain bulk load of the same rows, COMMIT included.

    Into a table of the same columns and primary key: the key is what makes a load
    exactly-once, and a user's own table of calls would have it too.
    """
    parsed = parse_database_url(url)
    database = open_database(parsed, "vbot_floor_shape", RECORD_COLUMNS)
    dicts = floor_rows(records, parsed.backend)
    rows = [tuple(row.values()) for row in dicts]
    names = ", ".join(quote(c.name) for c in RECORD_COLUMNS)
    definitions = ", ".join(
        f"{quote(c.name)} {database.types[c.kind]}{' PRIMARY KEY' if c.name == KEY else ''}"
        for c in RECORD_COLUMNS
    )
    database.execute(f"CREATE TABLE floor ({definitions})")
    database.commit()
    database.close()
    if parsed.backend == "postgresql":
        with psycopg.connect(parsed.target) as connection:
            started = time.perf_counter()
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY floor ({names}) FROM STDIN".encode()) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            connection.commit()
            return time.perf_counter() - started
    if parsed.backend == "duckdb":
        import duckdb

        with duckdb.connect(parsed.target) as connection, tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            path, columns = Path(tmp) / "rows.json", RECORD_COLUMNS
            path.write_bytes(orjson.dumps(dicts))
            types = ", ".join(f"{quote(c.name)}: '{database.types[c.kind]}'" for c in columns)
            connection.execute(
                f"INSERT INTO floor SELECT {names} FROM read_json(?, "
                f"format = 'array', columns = {{{types}}})",
                [str(path)],
            )
            return time.perf_counter() - started
    import sqlite3

    with contextlib.closing(sqlite3.connect(parsed.target)) as connection:
        started = time.perf_counter()
        marks = ", ".join("?" for _ in RECORD_COLUMNS)
        connection.executemany(f"INSERT INTO floor ({names}) VALUES ({marks})", rows)
        connection.commit()
        return time.perf_counter() - started


def part_one(records: list[CallRecord], runs: int, postgres: str, directory: Path) -> None:
    print(f"## Loading {len(records):,} calls (median of {runs} runs; rows/s, higher is better)\n")
    print(
        "| backend | sink, insert | sink, update | floor (plain bulk load) | sink / floor time "
        "| (sink - row building) / floor |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for backend in BACKENDS:
        inserts, updates, floors, ratios, net = [], [], [], [], []
        for _ in range(runs):
            url = fresh_database(backend, directory, postgres)
            build = building(url, records)
            floor = floor_load(url, records)
            insert = sink_load(url, records)
            update = sink_load(url, records)
            floors.append(floor)
            inserts.append(insert)
            updates.append(update)
            ratios.append(insert / floor)
            net.append((insert - build) / floor)
        n = len(records)
        print(
            f"| {backend} | {n / statistics.median(inserts):,.0f} | "
            f"{n / statistics.median(updates):,.0f} | {n / statistics.median(floors):,.0f} | "
            f"{statistics.median(ratios):.2f}x | {statistics.median(net):.2f}x |",
            flush=True,
        )


@contextlib.contextmanager
def fake_server(records: int, latency: float) -> Iterator[tuple[str, str]]:
    """The fake server in its own process: (base URL, token)."""
    command = [
        sys.executable, "-m", "vbot_cdr", "serve-fake", "--records", str(records),
        "--latency", str(latency),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        found: dict[str, str] = {}
        while len(found) < 2:
            matched = re.match(r"export (\w+)=(.*)", process.stdout.readline().strip())
            if matched:
                found[matched[1]] = matched[2]
        yield found["VBOT_BASE_URL"], found["VBOT_TOKEN"]
    finally:
        process.terminate()
        process.wait()


async def timed(run: Callable[[VBotClient], Any], base_url: str, token: str) -> float:
    async with VBotClient(token, base_url=base_url) as client:
        started = time.perf_counter()
        await run(client)
        return time.perf_counter() - started


def part_two(count: int, runs: int, postgres: str, directory: Path, latency: float) -> None:
    print(f"\n## Sync of {count:,} calls, fake server at {latency * 1000:.0f} ms per request\n")
    print("| into | wall time (median) | over the reads alone |")
    print("|---|---:|---:|")
    start = CallFilter(start_date=DEFAULT_START)
    window = dt.timedelta(days=1)

    async def reads_alone(client: VBotClient) -> None:
        state = directory / f"state-{uuid.uuid4().hex}.json"
        async with client.sync(state, start, window=window) as sync:
            async for _ in sync:
                pass

    results: dict[str, list[float]] = {name: [] for name in ("reads alone", *BACKENDS)}
    with fake_server(count, latency) as (base_url, token):
        for _ in range(runs):
            results["reads alone"].append(asyncio.run(timed(reads_alone, base_url, token)))
            for backend in BACKENDS:
                url = fresh_database(backend, directory, postgres)

                async def into(client: VBotClient, url: str = url) -> None:
                    done = await sync_to_database(client, url, start, window=window)
                    assert done.loaded == count, done

                results[backend].append(asyncio.run(timed(into, base_url, token)))
    alone = statistics.median(results["reads alone"])
    for name, times in results.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.2f} s | {median / alone:.2f}x |")


def rows_in(url: str, table: str) -> int:
    """The rows of ``table`` at ``url``, counted with the driver alone."""
    parsed = parse_database_url(url)
    sql = f"SELECT count(*) FROM {table}"
    if parsed.backend == "postgresql":
        with psycopg.connect(parsed.target) as connection:
            row = connection.execute(sql.encode()).fetchone()
    elif parsed.backend == "duckdb":
        import duckdb

        with duckdb.connect(parsed.target) as connection:
            row = connection.execute(sql).fetchone()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(parsed.target)) as connection:
            row = connection.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def part_whole(
    calls: int, runs: int, postgres: str, directory: Path, trees: dict[str, Path]
) -> None:
    """``vbot-cdr sync --to`` (from each tree) against the hand load, whole processes."""
    from exports import load, shape_file, spread, whole_process
    from run import Case, fake_server, pinning

    server_cores, client_cores = pinning()
    print(f"\n## sync --to, {calls:,} calls, whole processes (client CPU s, median (min-max))\n")
    print(f"Load average before: {load()}; server on {server_cores}, clients on {client_cores}\n")
    shape = shape_file(directory)
    clients = ("hand", *trees)
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    sizes = ["--page-size=500", "--concurrency=8"]
    with fake_server(Case("sink", calls, 500, 8), server_cores) as (base_url, token):
        for repetition in range(runs):
            for backend in BACKENDS[repetition % 3 :] + BACKENDS[: repetition % 3]:
                turn = repetition % len(clients)
                for client in clients[turn:] + clients[:turn]:
                    url = fresh_database(backend, directory, postgres)
                    target = parse_database_url(url).target
                    if client == "hand":
                        env = {**os.environ, "PYTHONPATH": ""}
                        command = [
                            sys.executable, str(HERE / "sinks_hand.py"), backend, target,
                            base_url, token, f"--shape={shape}", *sizes,
                        ]  # fmt: skip
                        table = "hand_calls"
                    else:
                        env = {**os.environ, "PYTHONPATH": str(trees[client]), "VBOT_TOKEN": token}
                        command = [
                            sys.executable, "-m", "vbot_cdr", "sync", "--base-url", base_url,
                            "--to", url, "--start-date", "2025-11-01", "--window", "400d",
                            "-q", *sizes,
                        ]  # fmt: skip
                        table = "vbot_calls"
                    # `python -m` puts the working directory first on the path: run each
                    # tree's client from that tree.
                    cwd = trees.get(client, HERE.parent)
                    figures = whole_process(command, client_cores, env, cwd)
                    if rows_in(url, table) != calls:
                        raise SystemExit(f"{client} into {backend} did not load {calls} calls")
                    samples.setdefault((backend, client), []).append(figures)
            print(f"repetition {repetition + 1}/{runs} done", file=sys.stderr)
    ratios = [(c, "hand") for c in trees] + ([("library", "before")] if "before" in trees else [])
    heads = " | ".join(f"{c} CPU s" for c in clients)
    heads += " | " + " | ".join(f"{a} / {b} CPU" for a, b in ratios)
    print(f"| into | {heads} | library / hand wall |")
    print("|---|" + "---:|" * (len(clients) + len(ratios) + 1))
    for backend in BACKENDS:
        cells = [spread([m["cpu_s"] for m in samples[backend, c]]) for c in clients]
        for a, b in ratios:
            pairs = zip(samples[backend, a], samples[backend, b], strict=True)
            cells.append(f"**{spread([x['cpu_s'] / y['cpu_s'] for x, y in pairs])}**")
        pairs = zip(samples[backend, "library"], samples[backend, "hand"], strict=True)
        cells.append(spread([x["wall_s"] / y["wall_s"] for x, y in pairs]))
        print(f"| {backend} | " + " | ".join(cells) + " |")
    print(f"\nLoad average after: {load()}")


HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync-calls", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--only", default="insert,sync,whole")
    parser.add_argument("--calls", type=int, default=50_000, help="calls of part 3")
    parser.add_argument(
        "--before", type=Path, help="a source tree of vbot_cdr to run side by side, as 'before'"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    trees = {"library": HERE.parent}
    if args.before:
        trees["before"] = args.before.resolve()
    with postgres_server() as postgres, tempfile.TemporaryDirectory() as tmp:
        if "insert" in parts:
            part_one(make_records(args.rows), args.runs, postgres, Path(tmp))
        if "sync" in parts:
            part_two(args.sync_calls, args.runs, postgres, Path(tmp), args.latency)
        if "whole" in parts:
            part_whole(args.calls, args.runs, postgres, Path(tmp), trees)


if __name__ == "__main__":
    main()
