"""Posts/s and acknowledgement latency of ``vbot-cdr listen``, beside a floor receiver.

For each concurrency (1, 16, 64 senders, each posting one call after another, the next as
soon as the last is answered) and each receiver, ``--posts`` distinct ``AUTO_CALL_COMPLETE``
bodies (the fake server's, `webhook_body`) are posted over loopback, and the run reports
posts per second and the p50/p99 of the time from sending a post to its answer:

- **floor**: an aiohttp handler in its own process that reads the body and answers 200
  without parsing or writing anything (the cost of HTTP alone);
- **sqlite**, **postgresql**: ``vbot-cdr listen --to URL`` in its own process; each 200
  means the call is committed (group commit: the posts that arrive during a commit share the
  next one).

Receivers and senders run in separate processes; the receiver is started fresh (a fresh
database) for every measurement, and the cases of one repetition are interleaved.
``--baseline TREE`` adds **sqlite@baseline** and **postgresql@baseline**: the same receivers
run from another checkout of the project (say, main's worktree), interleaved with these, for
a before/after comparison under the same load.

``--soak CALLS`` instead pushes CALLS calls from the fake server (ending as they are pushed,
``--rate`` a second) with a lossy sender's habits into an in-process receiver on PostgreSQL,
then runs one pull into the same table, and reports what was pushed, dropped, duplicated,
stored, found missing and completed by the pull, the push lag, and whether the table then
holds every call exactly once.

PostgreSQL comes from ``VBOT_CDR_TEST_POSTGRES_URL``, else a throwaway cluster is started
(see tests/_postgres.py). ``--sender lean`` posts prebuilt requests on raw keep-alive
connections instead of aiohttp's client, which costs the shared cores about twice the
receiver's CPU per post. Usage: python benchmarks/webhooks.py [--posts 2000] [--runs 1]
[--baseline TREE] [--sender aiohttp|lean] [--soak CALLS --rate R] [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sinks import postgres_server

from vbot_cdr.testing._data import RecordGenerator
from vbot_cdr.testing._pusher import webhook_body

ROOT = Path(__file__).resolve().parent.parent
HEADER_NAME, HEADER_VALUE = "X-Hook", "bench-header-value"
RECEIVERS = ("floor", "sqlite", "postgresql")
CONCURRENCY = (1, 16, 64)
URL = re.compile(r"(http://\S+)")


def fresh_database(receiver: str, directory: Path, postgres: str) -> str:
    name = f"bench_{uuid.uuid4().hex}"
    if receiver.startswith("sqlite"):
        return f"sqlite:///{directory}/{name}.db"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    return postgres.rsplit("/", 1)[0] + f"/{name}"


def floor_server() -> None:
    """The floor: answer every POST with 200 once its body is read (run as a child)."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="stored\n")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"floor listening on http://{host}:{port}/", file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def receiver_process(
    receiver: str, url: str | None, root: Path
) -> AsyncIterator[tuple[str, int]]:
    """The receiver as a child process, importing the project from ``root``; yields its URL
    and process id."""
    env = {**os.environ, "VBOT_WEBHOOK_HEADER": f"{HEADER_NAME}: {HEADER_VALUE}"}
    env["PYTHONPATH"] = str(root)
    if receiver == "floor":
        argv = [sys.executable, __file__, "--floor-server"]
    else:
        assert url is not None
        argv = [sys.executable, "-m", "vbot_cdr", "listen", "--to", url, "--port", "0"]
    # In ``root`` too: ``python -m`` imports from the working directory before PYTHONPATH.
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=root, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
    match = URL.search(line)
    if match is None:
        process.kill()
        raise RuntimeError(f"the receiver did not start: {line}")
    try:
        yield match.group(1), process.pid
    finally:
        process.terminate()
        await process.communicate()


async def measure(
    base: str, bodies: list[bytes], concurrency: int, sender: str = "aiohttp"
) -> dict[str, Any]:
    """Post ``bodies`` from ``concurrency`` senders; posts/s and latency percentiles."""
    if sender == "lean":
        return await measure_lean(base, bodies, concurrency)
    latencies: list[float] = []
    queue = iter(bodies)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers={HEADER_NAME: HEADER_VALUE}
    ) as session:
        # Warm up the connections (not measured).
        await asyncio.gather(*(session.get(base + "health") for _ in range(concurrency)))

        async def sender() -> None:
            nonlocal failures
            for body in queue:
                started = time.perf_counter()
                async with session.post(base, data=body) as answer:
                    await answer.read()
                    if answer.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return figures(latencies, elapsed, failures)


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


async def measure_lean(base: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """`measure` with senders that cost the machine little: each a keep-alive connection
    writing prebuilt HTTP/1.1 requests and reading the answers' heads and bodies (aiohttp's
    client spends about twice the receiver's CPU per post, on the same cores)."""
    address = urllib.parse.urlsplit(base)
    host, port, path = address.hostname, address.port, address.path or "/"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{HEADER_NAME}: {HEADER_VALUE}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    requests = iter([head + b"%d\r\n\r\n" % len(body) + body for body in bodies])
    latencies: list[float] = []
    failures = 0
    connections = [await asyncio.open_connection(host, port) for _ in range(concurrency)]

    async def sender(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal failures
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            answer = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(answer)
            assert length is not None, answer
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - started)
            if answer[9:12] != b"200":
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(reader, writer) for reader, writer in connections))
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return figures(latencies, elapsed, failures)


def figures(latencies: list[float], elapsed: float, failures: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "posts_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "failures": failures,
    }


def make_bodies(count: int, offset: int) -> list[bytes]:
    generator = RecordGenerator(seed=9, id_prefix=f"B{offset}")
    return [orjson.dumps(webhook_body(generator.record(i))) for i in range(count)]


async def run(
    posts: int, runs: int, postgres: str, directory: Path, baseline: Path | None, sender: str
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    case = 0
    for repetition in range(runs):
        for concurrency in CONCURRENCY:
            for receiver in receivers(baseline):
                case += 1
                url = None if receiver == "floor" else fresh_database(receiver, directory, postgres)
                root = baseline if receiver.endswith("@baseline") and baseline else ROOT
                bodies = make_bodies(posts, case)
                async with receiver_process(receiver, url, root) as (base, pid):
                    receiver_cpu, sender_cpu = process_cpu(pid), own_cpu()
                    measured = await measure(base, bodies, concurrency, sender)
                    # CPU seconds per post, in µs: the receiver's process and the senders'.
                    measured["receiver_us"] = (process_cpu(pid) - receiver_cpu) / posts * 1e6
                    measured["sender_us"] = (own_cpu() - sender_cpu) / posts * 1e6
                if url is not None:
                    measured["stored"] = count_rows(url)
                results.append(
                    {
                        "run": repetition,
                        "receiver": receiver,
                        "concurrency": concurrency,
                        **measured,
                    }
                )
                print(results[-1], file=sys.stderr, flush=True)
    return results


def process_cpu(pid: int) -> float:
    """The CPU seconds (user and system) process ``pid`` has used (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """The CPU seconds (user and system) this process, the senders', has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def receivers(baseline: Path | None) -> tuple[str, ...]:
    """The receivers measured, each database's baseline (if any) beside it."""
    if baseline is None:
        return RECEIVERS
    return ("floor", "sqlite@baseline", "sqlite", "postgresql@baseline", "postgresql")


def count_rows(url: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            return int(connection.execute("SELECT count(*) FROM vbot_calls").fetchone()[0])
    with psycopg.connect(url) as connection:
        row = connection.execute(b"SELECT count(*) FROM vbot_calls").fetchone()
        assert row is not None
        return int(row[0])


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| senders | receiver | posts/s | ack p50 (ms) | ack p99 (ms) | p99 / floor p99 | "
        "stored | non-200 | receiver CPU/post (µs) | senders' CPU/post (µs) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency in CONCURRENCY:
        floor = [r for r in results if r["receiver"] == "floor" and r["concurrency"] == concurrency]
        floor_p99 = statistics.median(r["p99_ms"] for r in floor)
        for receiver in dict.fromkeys(r["receiver"] for r in results):
            rows = [
                r for r in results if r["receiver"] == receiver and r["concurrency"] == concurrency
            ]
            rate = statistics.median(r["posts_per_s"] for r in rows)
            p50 = statistics.median(r["p50_ms"] for r in rows)
            p99 = statistics.median(r["p99_ms"] for r in rows)
            stored = "" if receiver == "floor" else str(min(r["stored"] for r in rows))
            ratio = "" if receiver == "floor" else f"{p99 / floor_p99:.2f}x"
            failures = sum(r["failures"] for r in rows)
            cpu = statistics.median(r["receiver_us"] for r in rows)
            senders = statistics.median(r["sender_us"] for r in rows)
            lines.append(
                f"| {concurrency} | {receiver} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {ratio} | "
                f"{stored} | {failures} | {cpu:.0f} | {senders:.0f} |"
            )
    return "\n".join(lines)


async def soak(calls: int, rate: float, url: str) -> dict[str, Any]:
    """Push ``calls`` calls at ``rate`` a second with a lossy sender, then one pull."""
    from aiohttp import web

    from vbot_cdr import CallFilter, VBotClient, WebhookSink, sync_to_database, webhook_app
    from vbot_cdr.testing import FakeVBotServer, PushHabits

    habits = PushHabits(drop=0.05, duplicate=0.05, reorder=0.1, other_events=0.1, seed=1)
    sink = WebhookSink(url)
    runner = web.AppRunner(webhook_app(sink, header=f"{HEADER_NAME}: {HEADER_VALUE}"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    generator = RecordGenerator(seed=5, id_prefix="SOAK")
    started = time.time()
    fake = FakeVBotServer(
        count=0,
        webhook_url=f"http://{host}:{port}/",
        webhook_header=f"{HEADER_NAME}: {HEADER_VALUE}",
        webhook_habits=habits,
    )
    async with fake:
        assert fake.webhooks is not None
        for i in range(calls):
            duration = generator.record(i, created=0)["duration"]
            # The call ends now, as VBot pushes it when it ends.
            fake.add_records([generator.record(i, created=int(time.time()) - duration)])
            await asyncio.sleep(1 / rate)
        await fake.webhooks.drain()
        pushed_for = time.time() - started
        before = await sink.count_sources()
        async with VBotClient(fake.token, base_url=fake.base_url) as client:
            done = await sync_to_database(
                client, url, CallFilter(start_date=int(started) - 3600), settle=dt.timedelta(0)
            )
        after = await sink.count_sources()
        served = {r["trans_id"] for r in fake.records}
        pusher = fake.webhooks
    await runner.cleanup()
    with psycopg.connect(url) as connection:
        keys = [row[0] for row in connection.execute(b"SELECT trans_id FROM vbot_calls")]
    stats = sink.stats.as_dict()
    return {
        "calls": calls,
        "pushed_for_s": round(pushed_for, 1),
        "posts_answered": {str(status): n for status, n in pusher.posted.items()},
        "dropped_by_sender": len(pusher.dropped),
        "stored_by_push": stats["stored"],
        "duplicates": stats["duplicates"],
        "other_events": sum(stats["other_events"].values()),
        "refused": stats["refused"],
        "push_lag_ms": stats["push_lag_ms"],
        "pulled": done.loaded,
        "missing_from_push": after[0] - before[0],
        "completed_by_pull": after[1] - before[1],
        "table_rows": len(keys),
        "exactly_once": len(keys) == len(set(keys)) and set(keys) == served,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--posts", type=int, default=2000, help="posts per measurement")
    parser.add_argument("--runs", type=int, default=1, help="repetitions")
    parser.add_argument("--soak", type=int, metavar="CALLS", help="soak with CALLS calls")
    parser.add_argument("--rate", type=float, default=50.0, help="soak: calls a second")
    parser.add_argument(
        "--baseline", type=Path, metavar="TREE", help="also measure the receivers of TREE"
    )
    parser.add_argument(
        "--sender",
        choices=("aiohttp", "lean"),
        default="aiohttp",
        help="the senders: aiohttp's client, or lean prebuilt requests on raw connections",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the receiver's own costs without HTTP: reading a body, a group's upsert",
    )
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server()
        return
    if args.in_process:
        with postgres_server() as postgres, tempfile.TemporaryDirectory() as tmp:
            for tree in [ROOT, *([args.baseline] if args.baseline else [])]:
                url = fresh_database("postgresql", Path(tmp), postgres)
                print(f"{tree}:", flush=True)
                costs = Path(__file__).with_name("webhook_costs.py")
                subprocess.run([sys.executable, costs, str(tree), url], check=True)
        return
    if args.soak:
        with postgres_server() as postgres, tempfile.TemporaryDirectory() as tmp:
            url = fresh_database("postgresql", Path(tmp), postgres)
            print(orjson.dumps(asyncio.run(soak(args.soak, args.rate, url))).decode())
        return
    load_before = os.getloadavg()  # the load the run starts under, not its own
    with postgres_server() as postgres, tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(
            run(args.posts, args.runs, postgres, Path(tmp), args.baseline, args.sender)
        )
    print(
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.posts} posts per "
        f"measurement, {args.runs} run(s), {args.sender} senders, medians; CPython "
        f"{platform.python_version()}, {os.cpu_count()} cores; load average before: "
        f"{load_before}\n"
    )
    print(table(results))
    print(f"\nLoad average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
