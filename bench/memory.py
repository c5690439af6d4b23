"""Memory: resident size of each worker, and of the MCP server process (`python -m mcp_server
--http`, idle beside them), after 5,000 and 10,000 messages through the pipeline.
Target: under 150 MB, and no growth between the two.

    .venv/bin/python bench/memory.py [--messages 10000]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

from common import ROOT, Bench, first_start, machine, push, worker_rss_mb

WORKERS = {"intake": "poll,ingest,transcribe", "brain": "classify,respond", "send": "send,followup"}


def start_mcp(bench: Bench) -> subprocess.Popen[bytes]:
    """The MCP server as the Procfile runs it (`python -m mcp_server --http`), on the bench's database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = (bench.work_dir / "mcp.log").open("ab")
    server = subprocess.Popen([sys.executable, "-m", "mcp_server", "--http", "--port", str(port)], cwd=ROOT,
                              env=bench.env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((bench.work_dir / "mcp.log").read_text()[-2000:]) from None
            time.sleep(0.2)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def pss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        return next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    half = args.messages // 2
    bench = Bench("assistant_bench_memory")
    readings: dict[int, dict[str, dict[str, float]]] = {}
    mcp: subprocess.Popen[bytes] | None = None
    try:
        for name, queues in WORKERS.items():
            bench.workers.start(name, queues, concurrency=1)
        mcp = start_mcp(bench)
        first_start(bench)
        for number in range(args.messages):
            push(bench, f"7792{number:07d}", f"Хочу заказать торт, вопрос {number}")
            if number + 1 in (half, args.messages):
                while bench.wappi.sent_count("be0c0000-0001") < number + 1:
                    time.sleep(0.2)
                readings[number + 1] = {name: worker_rss_mb(bench.workers, name) for name in WORKERS}
                readings[number + 1]["mcp"] = {"rss": rss_mb(mcp.pid), "pss": pss_mb(mcp.pid)}
                print(f"after {number + 1} messages: " + ", ".join(
                    f"{name} rss {mb['rss']:.0f} MB / pss {mb['pss']:.0f} MB"
                    for name, mb in readings[number + 1].items()), flush=True)
            elif number % 200 == 199:  # keep the queues short, like real traffic would
                while bench.wappi.sent_count("be0c0000-0001") < number - 100:
                    time.sleep(0.1)
    finally:
        if mcp is not None:
            mcp.terminate()
            mcp.wait(timeout=30)
        bench.close()
    print(f"machine: {machine()} (each worker: main process + 1 pool process; the figures below are the "
          f"largest single process's RSS)")
    largest = {count: round(max(item["rss"] for item in reading.values()), 1) for count, reading in readings.items()}
    print(json.dumps({f"rss_mb_{half}": largest[half], f"rss_mb_{args.messages}": largest[args.messages],
                      "by_process": {count: {name: round(item["rss"], 1) for name, item in reading.items()}
                                     for count, reading in readings.items()}}))


if __name__ == "__main__":
    main()
