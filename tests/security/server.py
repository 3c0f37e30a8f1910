"""Start a real uvicorn server on 127.0.0.1 in a subprocess, wait until it answers, and read its JSON log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from leptonkit.serve.http import free_port

# the operations layer alone on a small app (``tests/security/apps.py``), its settings in LEPTONKIT_TEST_OPS
OPS_APP = ["-m", "uvicorn", "--factory", "tests.security.apps:ops_app", "--host", "127.0.0.1", "--port", "{port}"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_lines(self) -> list[dict]:
        """Every JSON line the server wrote to stderr so far (other lines are skipped)."""
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_server(
    args: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    scheme: str = "http",
    verify=False,
    timeout: float = 120,
) -> Iterator[Server]:
    """Run ``python ARGS`` (which must serve on the port given by ``{port}`` in ARGS) until the block ends."""
    port = free_port()
    command = [sys.executable, *(a.replace("{port}", str(port)) for a in args)]
    log = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(f"{scheme}://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_text()[-3000:]}")
            try:
                if httpx.get(server.url + "/health", verify=verify, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer /health in {timeout} s:\n{server.log_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
