"""Helpers shared by the ``serve_*`` benchmarks: start a real ``leptonkit serve`` process and wait until ready."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, path: str = "/ready", timeout: float = 600) -> float:
    """Seconds until ``url + path`` answers 200 (the process must stay alive meanwhile)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server not ready in time")


@contextlib.contextmanager
def leptonkit_server(home: Path, *args: str) -> Iterator[tuple[str, float]]:
    """``leptonkit serve ARGS`` on a free port; yields (url, seconds from process start to ready)."""
    port = free_port()
    env = os.environ | {"LEPTONKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "leptonkit.cli.main", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, wait_ready(url, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
