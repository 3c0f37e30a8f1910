"""A custom service on Ray Serve through the SDK: the same class as ``tests/serve/test_services.py``, two replicas on
a real local Ray cluster (``DeployModel(Toolkit, replicas=2).deploy(backend="ray")``), scaled and stopped."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import leptonkit as lk
from tests.serve.test_services import TOOLKIT

ray_serve = pytest.importorskip("leptonkit.deploy.ray_serve", reason="ray[serve] is the deploy extra")


def test_a_service_on_two_ray_replicas_batches_streams_scales_and_stops(home, tmp_path):
    deployment = lk.DeployModel(TOOLKIT, replicas=2).deploy(backend="ray", num_cpus=0.5)
    try:
        status = deployment.status()
        assert status["status"] == "RUNNING" and [r["state"] for r in status["replicas"]] == ["RUNNING"] * 2
        with httpx.Client(base_url=deployment.url, timeout=120) as http:

            def one(i: int) -> tuple[float, str | None]:
                response = http.post("/v1/services/toolkit/score", json={"query": str(i), "passage": "pp"})
                return response.json(), response.headers.get("x-leptonkit-replica")

            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(one, range(64)))
        assert [value for value, _ in results] == [i + 0.2 for i in range(64)]  # each result to its caller
        assert {replica for _, replica in results} == {r["id"] for r in status["replicas"]}  # both replicas served
        assert list(deployment.client().call("spell", text="ray")) == ["r", "a", "y"]
        # Ray's HTTP servers leave disconnects to the app (``deploy/ray_ingress.py``): a stream whose client has
        # gone stops all the same
        for replica in status["replicas"]:
            environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
            assert (
                b"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=leptonkit.deploy.ray_ingress:ingress_middlewares" in environ
            )
        log = tmp_path / "drip.log"
        with httpx.stream("POST", f"{deployment.url}/v1/services/toolkit/drip", json={"log": str(log)}) as response:
            assert next(line for line in response.iter_lines() if line) == "data: 0"
        time.sleep(1)  # the client has gone: 20 more items if nothing noticed
        sent = log.read_text().count("\n")
        time.sleep(0.5)
        assert log.read_text().count("\n") == sent < 10
        deployment.scale(1)
        assert deployment.status()["target_replicas"] == 1
    finally:
        deployment.stop()
    assert ray_serve.status(home=home) == []  # its last app stopped: the local cluster the deploy started is gone
