"""Cold start: seconds from ``leptonkit serve`` to ``/ready`` for MiniLM and for a tiny generator.

Wall time depends on how busy the machine is, so the server process's own CPU time until ready (user + system, from
``/proc``) is recorded too. Writes ``benchmarks/results/serve_cold_start.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_result
from serve_common import free_port, wait_ready


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(home: Path, ref: str) -> dict:
    port = free_port()
    env = os.environ | {"LEPTONKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "leptonkit.cli.main", "serve", ref, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wall = wait_ready(f"http://127.0.0.1:{port}", proc)
        return {"wall_s": wall, "server_cpu_s": cpu_seconds(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from leptonkit.registry import Registry
    from leptonkit.train.tokenizer import train_tokenizer

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "tiny"
        registry = Registry(home)
        registry.register("builtin:minilm", name="minilm", task="embedding")
        tokenizer = train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 100, vocab_size=300)
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        config.num_attention_heads, config.num_key_value_heads, config.max_position_embeddings = 4, 2, 256
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        registry.register(str(folder), name="tiny", task="generation")
        started = time.time()
        result = {
            "minilm": cold_start(home, "minilm"),
            "tiny_generator": cold_start(home, "tiny"),
            "seconds_total": time.time() - started,
        }
    write_result("serve_cold_start", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
