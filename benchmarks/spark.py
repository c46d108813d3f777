"""The Spark data source against the CLI, on the same fake server: session start and rows/s.

Run on demand from the repository root (``pip install -e '.[spark]'``, Java 17+)::

    python benchmarks/spark.py [--records 20000] [--latency 0.0]

It serves ``--records`` v3 calls (one each 37 s, from 2025-12-01) from a fake server in a
thread of its own, then times, one after the other: ``vbot-cdr export --format parquet`` of
them (in this process), a ``local[2]`` SparkSession's start, and the same calls read with
``spark.read.format("vbot_cdr")`` (one-day partitions) and written as
Parquet, twice (the first job also starts Spark's Python workers). It prints one line per
measurement. The machine's load changes every figure: quote it with them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer

KEY = "bench-key"


def _serve(fake: FakeVBotServer) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(30)
    return loop


def run(records: int, latency: float) -> None:
    fake = FakeVBotServer(count=records, api="v3", api_key=KEY, latency=latency)
    _serve(fake)
    start = "2025-12-01T00:00:00+00:00"
    end = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=37 * records)
    end_text = (end + dt.timedelta(hours=1)).isoformat()
    os.environ["VBOT_API_KEY"] = KEY
    os.environ["PYSPARK_PYTHON"] = sys.executable
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "cli.parquet"
        began = time.perf_counter()
        argv = ["export", "--base-url", fake.base_url, "--start-date", start]
        status = main([*argv, "--end-date", end_text, "-o", str(out), "-q"])
        cli = time.perf_counter() - began
        assert status == 0, status
        print(f"cli export parquet: {records} calls in {cli:.1f} s = {records / cli:,.0f} rows/s")

        from pyspark.sql import SparkSession

        from vbot_cdr.spark import VBotDataSource

        began = time.perf_counter()
        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        spark.dataSource.register(VBotDataSource)
        print(f"spark session start: {time.perf_counter() - began:.1f} s")
        options = {
            "base_url": fake.base_url,
            "api_key_env": "VBOT_API_KEY",
            "start_date": start,
            "end_date": end_text,
            "partition_window": "1d",
        }
        df = spark.read.format("vbot_cdr").options(**options).load()
        partitions = df.rdd.getNumPartitions()
        # The first job also starts the Python workers (and imports the library in each).
        for run_name in ("cold", "warm"):
            target = str(Path(work) / f"spark-{run_name}.parquet")
            began = time.perf_counter()
            df.write.parquet(target)
            took = time.perf_counter() - began
            count = spark.read.parquet(target).count()
            assert count == records, count
            print(
                f"spark read + write parquet ({run_name}): {records} calls, {partitions} "
                f"partitions, in {took:.1f} s = {records / took:,.0f} rows/s"
            )
        spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.0)
    arguments = parser.parse_args()
    run(arguments.records, arguments.latency)
