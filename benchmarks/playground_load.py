"""Load on `mlpbp playground`: N browser-like sessions training at once for a while.

Starts the server (`mlpbp playground --port 0`), opens N WebSockets as N tabs would, sets each to
the page's default 2-8-8-2 network on 500 points (each its own seed), presses Run, and for
DURATION seconds counts each session's live updates and measures its latency: a ping every
0.5 s, answered between training batches, timed until its pong. A session is dropped if its
socket closes or it stops receiving updates for 5 s. Prints one row per session and a summary;
--json writes them as JSON.

    python benchmarks/playground_load.py --sessions 20 --seconds 60
    python benchmarks/playground_load.py --sessions 1 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time

import websockets

PING_EVERY_S = 0.5
STALL_S = 5.0


async def session(url: str, seed: int, seconds: float, stats: dict) -> None:
    frames, latencies, sent = 0, [], {}
    gaps, last_frame = [], None
    async with websockets.connect(url, max_size=2**24) as ws:

        async def reader():
            nonlocal frames, last_frame
            async for raw in ws:
                msg = json.loads(raw)
                now = time.perf_counter()
                if msg["type"] == "frame" and running.is_set():
                    frames += 1
                    if last_frame is not None:
                        gaps.append(now - last_frame)
                    last_frame = now
                elif msg["type"] == "pong" and msg["id"] in sent:
                    latencies.append(now - sent.pop(msg["id"]))
                elif msg["type"] in ("error", "closed"):
                    stats["problem"] = msg.get("message") or msg.get("reason")

        running = asyncio.Event()
        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"type": "configure", "settings": {"seed": seed}}))
        await asyncio.sleep(0.5)
        running.set()
        await ws.send(json.dumps({"type": "run"}))
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds:
            if task.done():
                break
            sent[i] = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "id": i}))
            i += 1
            await asyncio.sleep(PING_EVERY_S)
        elapsed = time.perf_counter() - started
        running.clear()
        await ws.send(json.dumps({"type": "pause"}))
        task.cancel()
    stalled = max(gaps, default=0.0) > STALL_S or last_frame is None
    stats.update(
        frames=frames,
        rate=frames / elapsed,
        latency_median_ms=1000 * statistics.median(latencies) if latencies else None,
        latency_p95_ms=1000 * sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else None,
        longest_gap_s=max(gaps, default=None),
        pings_unanswered=len(sent),
        dropped=bool(task.done() and not task.cancelled() and task.exception()) or stalled,
    )


async def run(url: str, n: int, seconds: float) -> list[dict]:
    stats = [{"session": i + 1} for i in range(n)]

    async def one(i):
        try:
            await session(url, i, seconds, stats[i])
        except (OSError, websockets.ConnectionClosed) as e:
            stats[i].update(dropped=True, problem=f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one(i) for i in range(n)))
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlpbp", "playground", "--port", "0", "--max-sessions", str(max(32, args.sessions))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        address = re.search(r"http://([^/]+)/", line).group(1)
        stats = asyncio.run(run(f"ws://{address}/ws", args.sessions, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.sessions} sessions, {args.seconds:g} s, 2-8-8-2 tanh on 500 points (adam, 5 steps per update)")
    print("session  updates/s  latency median ms  p95 ms  longest gap s  dropped")
    for s in stats:
        print(
            f"{s['session']:7d}  {s.get('rate', 0):9.1f}  {s.get('latency_median_ms') or float('nan'):17.1f}"
            f"  {s.get('latency_p95_ms') or float('nan'):6.1f}  {s.get('longest_gap_s') or float('nan'):13.2f}"
            f"  {'yes: ' + str(s.get('problem')) if s.get('dropped') else 'no'}"
        )
    rates = [s.get("rate", 0.0) for s in stats]
    lat = [s["latency_median_ms"] for s in stats if s.get("latency_median_ms") is not None]
    print(
        f"all: updates/s min {min(rates):.1f} median {statistics.median(rates):.1f} max {max(rates):.1f};"
        f" median latency {statistics.median(lat):.1f} ms; dropped {sum(bool(s.get('dropped')) for s in stats)}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(stats, f, indent=1)


if __name__ == "__main__":
    main()
