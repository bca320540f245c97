"""`prvr serve` under load: requests/s and p50/p95 latency at 1, 8 and 32 concurrent clients.

Starts `prvr serve INDEX` as its own process on 127.0.0.1 (a free port; only loopback is ever
contacted), waits for it, warms it with one search, then per level runs that many client
threads, each with one keep-alive HTTP connection, sending requests back to back until the
level has sent --requests requests or run --seconds seconds, whichever comes first. Two kinds:

- search: GET /api/search?q=...&k=12 (the page's request), queries cycled from the list;
- thumb: GET /thumbs/... of the hits of those searches, already cached (what a page's pictures cost).

Latency is per request, wall clock, measured by the client (connection reused). The server is
`prvr serve --workers N` (uvicorn; N processes, each with its own searcher; default 1). Several
indexes (a local one and a Qdrant-backed one) and worker counts are measured one after another.

    python benchmarks/serve_load.py --index prvr-demo/index [more indexes] [--workers 1,2]
        [--queries FILE] [--clients 1,8,32] [--requests 400] [--seconds 30]
Without --queries the index must be the demo's (or another synthetic one): its topic phrases
are the queries. Prints one JSON object (with several runs: {"runs": [...]}).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int, workers: int = 1) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "prvr_cli", "serve", str(index), "--host", HOST, "--port", str(port)]
        + ["--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prvr serve exited: {proc.stdout.read()}")
        try:
            get(http.client.HTTPConnection(HOST, port, timeout=5), "/api/info")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("prvr serve did not answer within 120 s")


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status} {body[:200]!r}")
    return body


def level(port: int, paths: list[str], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` threads share a budget of ``requests`` requests and ``seconds`` seconds."""
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        mine = []
        while time.monotonic() < stop_at:
            with lock:
                if sent[0] >= requests:
                    break
                i = sent[0]
                sent[0] += 1
            t0 = time.perf_counter()
            try:
                get(conn, paths[i % len(paths)])
            except Exception as err:  # noqa: BLE001 - a failed request is counted, not fatal
                errors.append(str(err)[:200])
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
    }


def demo_queries(index: Path) -> list[str]:
    from prvr_cli.data.layout import Layout
    from prvr_cli.data.synth import phrase_topics

    ds = json.loads((index / "index.json").read_text())["dataset"]
    return [f"the {p}" for p in dict.fromkeys(phrase_topics(Layout(Path(ds["root"]), ds["collection"])))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, nargs="+", default=[Path("prvr-demo/index")], help="one or more indexes")
    ap.add_argument("--workers", default="1", help="comma-separated `prvr serve --workers` counts, each measured")
    ap.add_argument("--queries", type=Path, help="one query per line (default: a synthetic index's phrases)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=400, help="requests per level at most")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    args = ap.parse_args()
    runs = [measure(index, int(w), args) for index in args.index for w in args.workers.split(",")]
    print(json.dumps(runs[0] if len(runs) == 1 else {"runs": runs}, indent=2))


def measure(index: Path, workers: int, args) -> dict:
    """One server (``workers`` processes) over ``index``, under each level of clients."""
    queries = (
        [q.strip() for q in args.queries.read_text().splitlines() if q.strip()] if args.queries else demo_queries(index)
    )
    port = free_port()
    t0 = time.perf_counter()
    proc = start_server(index, port, workers)
    startup = time.perf_counter() - t0
    try:
        searches = [f"/api/search?{urllib.parse.urlencode({'q': q, 'k': 12})}" for q in queries]
        thumbs = []
        # warm: the hits' pictures are decoded and cached once; a connection per few searches, so
        # that every worker process (each takes its own connections) has answered before timing
        for c in range(4 * workers):
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            for p in searches[c * 5 : c * 5 + 5] or searches[:5]:
                for hit in json.loads(get(conn, p))["results"]:
                    if hit["thumbnail"] and hit["thumbnail"] not in thumbs:
                        get(conn, hit["thumbnail"])
                        thumbs.append(hit["thumbnail"])
            conn.close()
        meta = json.loads((index / "index.json").read_text())
        result = {
            "index": str(index),
            "backend": meta.get("backend", {}).get("kind", "local"),
            "workers": workers,
            "videos": json.loads(get(http.client.HTTPConnection(HOST, port), "/api/info"))["videos"],
            "queries": len(queries),
            "server_start_seconds": round(startup, 2),
            "host": HOST,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "budget": {"requests": args.requests, "seconds": args.seconds},
            "search": [],
            "thumb": [],
        }
        for n in (int(c) for c in args.clients.split(",")):
            result["search"].append(level(port, searches, n, args.requests, args.seconds))
            if thumbs:
                result["thumb"].append(level(port, thumbs, n, args.requests, args.seconds))
    finally:
        proc.terminate()
        proc.wait(20)
    print(json.dumps({"index": str(index), "workers": workers, "search": result["search"]}), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
