"""Multi-LoRA serving: per-request adapters in one batch, run-time load and unload, LRU eviction."""

from __future__ import annotations

import asyncio

import httpx

from tests.serve.conftest import serve_thread


def _complete(client: httpx.Client, model: str, prompt: str = "Hello world", n: int = 10) -> str:
    body = {"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def test_adapter_changes_output_by_name_or_base_colon_name(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        base, by_name, qualified = (_complete(client, m) for m in ("tiny", "sql", "tiny:sql"))
    assert by_name == qualified
    assert by_name != base


def test_mixed_adapter_batch_matches_solo_outputs(server):
    """Base and adapter requests decoding in the same steps give what each gives alone."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        models = ["tiny", "sql", "tiny", "sql", "sql", "tiny"]
        solo = [_complete(client, m, f"prompt {i}", 12) for i, m in enumerate(models)]

    async def together() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def one(i: int, model: str) -> str:
                body = {"model": model, "prompt": f"prompt {i}", "max_tokens": 12, "temperature": 0}
                response = await client.post("/v1/completions", json=body | {"ignore_eos": True})
                return response.json()["choices"][0]["text"]

            return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(models))))

    assert asyncio.run(together()) == solo


def test_load_and_unload_at_run_time(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post("/v1/adapters", json={"ref": "poet:1", "name": "poet"})
        assert created.status_code == 201, created.text
        assert created.json()["parent"] == "tiny"
        assert "poet" in {m["id"] for m in client.get("/v1/models").json()["data"]}
        poem, sql = _complete(client, "poet"), _complete(client, "sql")
        assert poem != sql
        again = client.post("/v1/adapters", json={"ref": "poet:1", "name": "poet"})
        assert again.status_code == 409
        assert client.delete("/v1/adapters/poet").json()["deleted"] is True
        gone = client.post("/v1/completions", json={"model": "poet", "prompt": "x", "max_tokens": 2})
        assert gone.status_code == 404
        assert client.delete("/v1/adapters/poet").status_code == 404
        not_adapter = client.post("/v1/adapters", json={"ref": "sentiment:1"})
        assert not_adapter.status_code == 400 and "not an adapter" in not_adapter.json()["error"]["message"]


def test_lru_eviction_reloads_on_demand(served_home):
    with (
        serve_thread(
            models=["tiny"], adapters={"sql": "sql", "poet": "poet"}, home=str(served_home), max_adapters=1
        ) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        adapters = running.app.state.models.adapters
        assert list(adapters.loaded) == ["poet"]  # loading poet evicted sql
        sql = _complete(client, "sql")
        assert list(adapters.loaded) == ["sql"]
        poem = _complete(client, "poet")
        assert list(adapters.loaded) == ["poet"]
        assert _complete(client, "sql") == sql and poem != sql
        metrics = client.get("/metrics").text
        assert 'leptonkit_adapters_loaded{model="tiny"} 1.0' in metrics
