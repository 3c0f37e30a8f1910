"""bf16 top-1 agreement of leptonkit's native engine with ``transformers.generate`` on SmolLM2-135M-Instruct.

In float32 the engine decodes token for token what ``generate`` does (``tests/serve/test_smollm2.py``). In bf16 the
two compute the same layers with different kernels (the engine's fused projections and attention over its own KV
cache), so rounding differs and greedy paths may part where two tokens nearly tie. This reports how far they agree:
per prompt, the number of the 64 greedy tokens (``ignore_eos``) that match position by position, and where the
first mismatch falls. Reported, not asserted: bf16 is emulated on a CPU without AVX-512 BF16 (slow, and not what
leptonkit serves there: ``--dtype auto`` is float32).

Estimator, fixed before the run: agreement = matching positions / all positions over the prompts; the engine runs
the prompts together in one batch, as a server would.

    lkbench .venv/bin/python benchmarks/smollm2_bf16_agreement.py

Appends a run to ``benchmarks/results/smollm2_bf16_agreement.json``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from results_io import machine, write_result

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea.",
             "Explain photosynthesis in one sentence."]  # fmt: skip
TOKENS = 64


def engine_tokens(model, tokenizer, prompts: list[list[int]]) -> list[list[int]]:
    from leptonkit.serve.engine.base import SamplingParams
    from leptonkit.serve.engine.generate import NativeEngine

    async def run() -> list[list[int]]:
        engine = NativeEngine("smol", model, tokenizer, max_num_seqs=len(prompts))
        await engine.start()

        async def one(ids: list[int]) -> list[int]:
            tokens: list[int] = []
            params = SamplingParams(max_tokens=TOKENS, temperature=0, ignore_eos=True)
            async for delta in engine.generate(ids, params):
                tokens += delta.token_ids
            return tokens

        try:
            return list(await asyncio.gather(*(one(ids) for ids in prompts)))
        finally:
            await engine.stop()

    return asyncio.run(run())


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leptonkit.registry import Registry

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(Registry(Path(tmp) / "home").register("builtin:smollm2", name="smol").path)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
            for q in QUESTIONS
        ]  # fmt: skip
        start = time.perf_counter()
        reference = []
        with torch.inference_mode():
            for ids in prompts:
                out = model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
                reference.append(out[0, len(ids) :].tolist())
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        engine = engine_tokens(model, tokenizer, prompts)
        engine_s = time.perf_counter() - start
    per_prompt = []
    for question, ref, got in zip(QUESTIONS, reference, engine, strict=True):
        matches = sum(a == b for a, b in zip(ref, got, strict=True))
        first = next((i for i, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b), None)
        per_prompt.append({"question": question, "matching": matches, "first_mismatch": first})
    result = {
        "model": "SmolLM2-135M-Instruct (builtin:smollm2, dequantised Q4_1)",
        "dtype": "bfloat16",
        "tokens_per_prompt": TOKENS,
        "top1_agreement": sum(p["matching"] for p in per_prompt) / (TOKENS * len(prompts)),
        "prompts": per_prompt,
        "seconds": {"generate": generate_s, "engine": engine_s},
    }
    write_result("smollm2_bf16_agreement", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
