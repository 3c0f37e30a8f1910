"""Helpers shared by the serving benchmarks: a random tiny Llama, and a real ``leptonkit serve`` process until ready."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from leptonkit.serve.http import free_port
from results_io import REPO, RESULTS  # noqa: F401  (re-exported)


def random_llama(text: str, vocab_size: int, **sizes: int) -> tuple[Any, Any]:
    """A Llama with seeded random weights and a byte-level BPE tokenizer of ``vocab_size`` trained on ``text``.

    The model has the ``tiny`` pretraining preset's shape with ``sizes`` replacing its fields, and stops at the
    tokenizer's EOS. Returns ``(model, tokenizer)``.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from leptonkit.train.presets import llama_config
    from leptonkit.train.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([text[i : i + 2000] for i in range(0, len(text), 2000)], vocab_size=vocab_size)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", vocab_size=len(tokenizer), tokenizer=tokenizer, **sizes))
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
    return model, tokenizer


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
