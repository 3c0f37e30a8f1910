"""Multi-LoRA serving: 32 streamed requests spread over 8 LoRA adapters in one batch vs the base model alone.

One server serves the ~17M Llama of ``serve_throughput.py`` with 8 adapters (rank 8 on q/k/v/o, random weights);
the same workload (32 prompts x 32 tokens, 64 output tokens, all at once) runs against the base and round-robin over
the adapters, ``REPEATS`` times each, taking turns; the median runs are compared. A batch without adapter requests
runs the plain base model (loaded adapters add nothing to it), so the base row is the base model alone. Writes
``benchmarks/results/serve_lora.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from results_io import machine, write_result
from serve_common import leptonkit_server
from serve_throughput import REPEATS, bench, build_model, median_run

ADAPTERS = [f"lora{i}" for i in range(8)]


def make_adapters(folder: Path, home: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from leptonkit.registry import Registry

    registry = Registry(home)
    base = registry.register(str(folder), name="bench-llama", task="generation")
    for i, name in enumerate(ADAPTERS):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(folder)
        config = LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
        registry.register(get_peft_model(model, config), name=name, base=base.ref, task="generation")


def main() -> None:
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "model", Path(tmp) / "home"
        build_model(folder)
        make_adapters(folder, home)
        flags = [arg for name in ADAPTERS for arg in ("--adapter", f"{name}={name}")]
        with leptonkit_server(home, "bench-llama", *flags, "--max-adapters", "8", "--threads", "1") as (url, _):
            workload = {"num_prompts": 32, "input_len": 32, "output_len": 64}
            bench(url, "bench-llama", num_prompts=4, input_len=8, output_len=4)  # warm-up
            models = {"base": "bench-llama", "eight_adapters_mixed": ",".join(ADAPTERS)}
            runs: dict[str, list[dict]] = {label: [] for label in models}
            for _ in range(REPEATS):
                for label, model in models.items():
                    runs[label].append(bench(url, model, **workload))
            result = {label: median_run(label_runs) for label, label_runs in runs.items()}
    result["ratio"] = result["eight_adapters_mixed"]["output_throughput"] / result["base"]["output_throughput"]
    write_result("serve_lora", result, info)
    print(json.dumps({k: result[k]["output_throughput"] for k in ("base", "eight_adapters_mixed")}, indent=2))
    print("ratio", result["ratio"])


if __name__ == "__main__":
    main()
