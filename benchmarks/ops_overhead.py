"""Cost of the operations layer: throughput with metrics, auth, request ids and JSON logs on, against the same
server with the operations middleware removed, in one run (issue 7 target: on >= 0.97x off).

Both servers run at once on the same tiny models (see ``soak.py``); load alternates between them in rounds
(off, on, off, on, ...) so that drift in a shared machine hits both alike. Two workloads at 16 concurrent
clients: single-text classification (the per-request overhead dominates) and streamed chat of 16 tokens.
On a machine shared with other work the end-to-end rounds are noisy, so the script also measures the middleware's
cost per request in-process (ASGI calls on a trivial route, no network, no model) and reports the throughput
ratio that cost implies for each workload's measured service time.

Estimator, fixed before the run (``ESTIMATOR``): per workload, the median over rounds of the round's on/off ratio
(requests completed with the middleware over requests completed without it, in the same round). The target is met
when that median is >= 0.97 for every workload; the totals are reported beside it, not judged.

    .venv/bin/python benchmarks/ops_overhead.py [--rounds 5] [--round-seconds 8]

Appends a run to ``benchmarks/results/ops_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from results_io import machine, write_result
from soak import build_models, start_server

ESTIMATOR = "median of per-round on/off ratios"
TARGET_RATIO = 0.97
WORKLOADS = {
    "classify": ("/v1/classify", {"model": "cls", "input": "a short review: not bad at all"}),
    "stream_chat": (
        "/v1/chat/completions",
        {
            "model": "gen",
            "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 16,
            "ignore_eos": True,
            "stream": True,
        },
    ),
}


def serve(variant: str, port: int, home: str) -> None:
    """Run one variant: ``on`` is the product as shipped with auth on; ``off`` lacks the operations middleware."""
    from leptonkit.serve.config import ServeConfig
    from leptonkit.serve.middleware import AccessMiddleware, AccountingMiddleware
    from leptonkit.serve.server import uvicorn_server

    config = ServeConfig(models=["gen", "cls"], port=port, home=home, auth="on" if variant == "on" else "off")
    server = uvicorn_server(config)
    if variant == "off":
        app = server.config.app
        app.user_middleware = [m for m in app.user_middleware if m.cls not in (AccessMiddleware, AccountingMiddleware)]
    server.run()


def middleware_cost(home: Path, key: str, calls: int = 3000) -> dict:
    """Microseconds the operations middleware adds per request, measured in-process on a trivial route (no
    network, no model): the same app called through the ASGI interface with and without the middleware."""
    from fastapi import FastAPI

    from leptonkit.serve.app import install_operations
    from leptonkit.serve.config import ServeConfig

    async def ping(body: dict) -> dict:
        return {"ok": True}

    def build(with_ops: bool) -> FastAPI:
        app = FastAPI()
        app.add_api_route("/v1/ping", ping, methods=["POST"])
        if with_ops:
            install_operations(app, ServeConfig(models=["x"], home=str(home), auth="on"))
        return app

    body = json.dumps({"model": "cls", "input": "a short review"}).encode()
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]

    async def call(app: FastAPI) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/ping",
            "raw_path": b"/v1/ping",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                assert message["status"] == 200, message

        await app(scope, receive, send)

    async def timed(app: FastAPI) -> float:
        for _ in range(200):
            await call(app)
        start = time.perf_counter()
        for _ in range(calls):
            await call(app)
        return (time.perf_counter() - start) / calls * 1e6

    from leptonkit.monitor.logging import access_logger

    access_logger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115  (log lines formatted, not shown)
    plain, ops = build(False), build(True)
    results = {"off_us": [], "on_us": []}
    for _ in range(3):
        results["off_us"].append(asyncio.run(timed(plain)))
        results["on_us"].append(asyncio.run(timed(ops)))
    off, on = min(results["off_us"]), min(results["on_us"])
    return {"request_us_off": round(off, 1), "request_us_on": round(on, 1), "added_us": round(on - off, 1)}


async def load(url: str, key: str, workload: str, seconds: float, clients: int) -> int:
    """Requests completed (status 200) in ``seconds`` by ``clients`` concurrent loops."""
    path, body = WORKLOADS[workload]
    stop = time.monotonic() + seconds
    done = 0

    async def loop(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < stop:
            async with http.stream("POST", path, json=body) as response:
                await response.aread()
                done += response.status_code == 200

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        await asyncio.gather(*(loop(http) for _ in range(clients)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.home)
        return
    info = machine()
    result: dict = {"clients": args.clients, "rounds": args.rounds, "round_seconds": args.round_seconds}
    result["estimator"] = ESTIMATOR
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        key = build_models(home)
        me = [str(Path(__file__).resolve()), "--port", "{port}", "--home", str(home)]
        result["middleware_in_process"] = middleware_cost(home, key)
        servers = {v: start_server(home, home / f"{v}.log", [*me, "--serve", v]) for v in ("off", "on")}
        try:
            for workload in WORKLOADS:
                asyncio.run(load(servers["off"][1], key, workload, 2, args.clients))  # warm both
                asyncio.run(load(servers["on"][1], key, workload, 2, args.clients))
                counts = {"off": [], "on": []}
                for _ in range(args.rounds):
                    for variant in ("off", "on"):
                        url = servers[variant][1]
                        counts[variant].append(asyncio.run(load(url, key, workload, args.round_seconds, args.clients)))
                rps = {v: sum(c) / (args.rounds * args.round_seconds) for v, c in counts.items()}
                ratios = [on / off for on, off in zip(counts["on"], counts["off"], strict=True) if off]
                # What the in-process cost implies: each request's server time grows by added_us.
                service_us = 1e6 / rps["off"]
                added = result["middleware_in_process"]["added_us"]
                result[workload] = {
                    "requests_per_s_off": round(rps["off"], 1),
                    "requests_per_s_on": round(rps["on"], 1),
                    "ratio_of_totals": round(rps["on"] / rps["off"], 4),
                    "round_ratios": [round(r, 4) for r in ratios],
                    "median_round_ratio": round(statistics.median(ratios), 4),
                    "ratio_implied_by_in_process_cost": round(service_us / (service_us + added), 4),
                    "rounds": counts,
                }
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
    result["target_ratio"] = TARGET_RATIO
    result["meets_target"] = all(result[w]["median_round_ratio"] >= TARGET_RATIO for w in WORKLOADS)
    write_result("ops_overhead", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
