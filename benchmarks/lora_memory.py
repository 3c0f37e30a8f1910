"""Where LoRA's training memory goes on CPU: MiniLM token classification, a fixed batch of 16 x 128 tokens, AdamW,
bf16 autocast, 12 steps; each variant in its own process. Writes ``results/lora_memory.json``.

Per variant: the growth of the process's peak resident memory over the steps (activations kept for backward,
gradients, optimiser state, allocator caches), and the bytes autograd keeps for one forward pass (tensors saved for
backward, parameters left out). Variants: full fine-tuning; LoRA r=16 on query/key/value/dense (every linear layer
of the encoder, the feed-forward ones included) with PEFT's dropout, with leptonkit's mask dropout
(:func:`leptonkit.train.methods.lean_lora_dropout`, what ``finetune`` uses) and without dropout; LoRA on the
attention only (query/key/value/attention.output.dense), what ``finetune_sst2.py`` uses.

    .venv/bin/python benchmarks/lora_memory.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from finetune_common import machine, write_result

ALL_DENSE = ["query", "key", "value", "dense"]
ATTENTION = ["query", "key", "value", "attention.output.dense"]
VARIANTS = {
    "full": {"method": "full"},
    "lora_all_dense_peft_dropout": {"method": "lora", "targets": ALL_DENSE, "dropout": 0.1, "lean": False},
    "lora_all_dense_mask_dropout": {"method": "lora", "targets": ALL_DENSE, "dropout": 0.1, "lean": True},
    "lora_all_dense_no_dropout": {"method": "lora", "targets": ALL_DENSE, "dropout": 0.0, "lean": True},
    "lora_attention_mask_dropout": {"method": "lora", "targets": ATTENTION, "dropout": 0.1, "lean": True},
}
BATCH, TOKENS, STEPS = 16, 128, 12


def measure(variant: dict) -> dict:
    import torch
    import transformers

    from leptonkit.registry import Registry

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForTokenClassification.from_pretrained(
        Registry().resolve("builtin:minilm"), num_labels=9
    )
    if variant["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        from leptonkit.train.methods import lean_lora_dropout

        config = LoraConfig(
            task_type="TOKEN_CLS",
            r=16,
            lora_alpha=32,
            lora_dropout=variant["dropout"],
            target_modules=variant["targets"],
        )
        model = get_peft_model(model, config)
        if variant["lean"]:
            lean_lora_dropout(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def batch() -> dict:
        ids = torch.randint(1000, 20000, (BATCH, TOKENS), generator=generator)
        labels = torch.randint(0, 9, (BATCH, TOKENS), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    saved: dict[int, int] = {}
    first = [True]  # saved tensors are counted in the first forward pass only

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if first[0] and storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(STEPS):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch()).loss
        first[0] = False
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "peak_rss_before_mb": round(peak_before, 1),
        "peak_rss_after_mb": round(peak_after, 1),
        "peak_rss_growth_mb": round(peak_after - peak_before, 1),
        "saved_for_backward_mb": round(sum(saved.values()) / 2**20, 1),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--only":
        print(json.dumps(measure(VARIANTS[sys.argv[2]])))
        return
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    results = {}
    for name, variant in VARIANTS.items():
        proc = subprocess.run(
            [sys.executable, str(Path(__file__)), "--only", name], capture_output=True, text=True, env=env, check=True
        )
        results[name] = variant | json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results[name]), flush=True)
    write_result(
        "lora_memory",
        {
            "benchmark": "lora_memory",
            "setup": {"base": "builtin:minilm", "batch": BATCH, "tokens": TOKENS, "steps": STEPS, "precision": "bf16"},
            "machine": machine(),
            "variants": results,
        },
    )


if __name__ == "__main__":
    main()
