"""Serving throughput: leptonkit's native engine over HTTP streaming vs a static-batch ``transformers.generate``.

Workload of issue 6: a Llama-style model of ~17M parameters (6 layers, hidden 384), 32 prompts of 32 tokens, 64
output tokens each, greedy, all sent at once; plus a single stream (TPOT) and vLLM's anchor workload (64 requests at
32 concurrent). The batch and single-stream workloads run ``REPEATS`` times per server, the servers taking turns,
and report the median run. The model has random weights (``ignore_eos`` fixes the output length, so speed does not
depend on them). leptonkit runs twice, as is and with ``--compile`` (decode steps compiled by inductor, as vLLM
compiles its models). Cold start is the time from ``leptonkit serve`` to ``/ready``. vLLM's server
(``--vllm-python``, a Python with ``vllm`` installed; required) runs in the same harness and dtype (bf16 where the
CPU has native bf16 matmuls, else float32: emulated bf16 is slower for both), with its OpenMP threads bound to as
many cores as leptonkit's torch threads (``VLLM_CPU_OMP_THREADS_BIND``, the setting vLLM's CPU guide documents),
so that each server's HTTP front end has the remaining core. Both sides' versions and thread settings are recorded.

Estimator, fixed before the run: per server and workload, the median of ``REPEATS`` runs; ratios are medians over
medians.

    .venv/bin/python benchmarks/serve_throughput.py --vllm-python /tmp/vllm/bin/python [--dtype bfloat16]

Appends a run to ``benchmarks/results/serve_throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from results_io import machine, write_result
from serve_common import REPO, free_port, leptonkit_server, random_llama, wait_ready

SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
REPEATS = 9  # runs of each timed workload per server, taking turns; the median one is reported
SETTLE_S = 2.0  # pause before each timed run: vLLM's engine keeps one CPU busy for ~1 s after its last request


def build_model(folder: Path) -> None:
    """The ``tiny`` preset's Llama (~17M parameters) with a 512-token context and an 8,192-token BPE tokenizer."""
    text = SHAKESPEARE.read_text() if SHAKESPEARE.is_file() else "the quick brown fox jumps over the lazy dog " * 5000
    model, tokenizer = random_llama(text, 8192, max_position_embeddings=512)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def static_generate(folder: Path, dtype: str, threads: int, batch: int, input_len: int, output_len: int) -> dict:
    """The same-run baseline: one static batch through ``transformers.generate``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
    prompts = torch.randint(100, 1000, (batch, input_len), generator=torch.Generator().manual_seed(0))
    kwargs = {"do_sample": False, "pad_token_id": 0, "min_new_tokens": output_len}
    with torch.inference_mode():
        model.generate(prompts[:2], attention_mask=torch.ones_like(prompts[:2]), max_new_tokens=4, do_sample=False)
        start = time.perf_counter()
        out = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=output_len,
            **kwargs,
        )
        seconds = time.perf_counter() - start
    tokens = (out.shape[1] - input_len) * batch
    return {"output_throughput": tokens / seconds, "seconds": seconds, "batch": batch}


def bench(url: str, model: str, **kwargs) -> dict:
    from leptonkit.bench.serve import BenchSettings, run_benchmark

    return asyncio.run(run_benchmark(BenchSettings(url=url, model=model, **kwargs)))


def median_run(runs: list[dict]) -> dict:
    """The run with the median output throughput, plus every run's throughput."""
    ordered = sorted(runs, key=lambda r: r["output_throughput"])
    return ordered[len(ordered) // 2] | {"runs_output_throughput": [r["output_throughput"] for r in ordered]}


def workloads(urls: dict[str, str], model: str) -> dict[str, dict]:
    """Every workload against every server. The timed ones run ``REPEATS`` times, the servers taking turns run by
    run, so a noisy minute on this shared machine falls on all of them: a 1-second run moves by 10% from one try to
    the next. Each run starts ``SETTLE_S`` after the last, when the other servers are idle (under 1% of a CPU)."""
    timed = {
        "batch_32x32x64": {"num_prompts": 32, "input_len": 32, "output_len": 64},
        "single_stream": {"num_prompts": 4, "input_len": 32, "output_len": 64, "max_concurrency": 1},
    }
    for url in urls.values():
        bench(url, model, num_prompts=4, input_len=32, output_len=8)  # warm-up
    runs: dict[str, dict[str, list[dict]]] = {server: {name: [] for name in timed} for server in urls}
    for _ in range(REPEATS):
        for name, kwargs in timed.items():
            for server, url in urls.items():
                time.sleep(SETTLE_S)
                runs[server][name].append(bench(url, model, **kwargs))
    result = {server: {name: median_run(server_runs[name]) for name in timed} for server, server_runs in runs.items()}
    for server, url in urls.items():
        time.sleep(SETTLE_S)
        result[server]["anchor_64_at_32"] = bench(
            url, model, num_prompts=64, input_len=32, output_len=64, max_concurrency=32
        )
    return result


@contextlib.contextmanager
def vllm_server(python: str, folder: Path, dtype: str, env: dict[str, str]) -> Iterator[tuple[str, float]]:
    """vLLM's OpenAI server on a free port until the context ends; yields (url, seconds to healthy)."""
    port = free_port()
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]
    command += ["--served-model-name", "bench-llama", "--port", str(port), "--dtype", dtype, "--max-num-seqs", "64"]
    command += ["--gpu-memory-utilization", "0.15"]  # on CPUs: the share of RAM reserved for the KV cache
    proc = subprocess.Popen(command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, wait_ready(url, proc, "/health")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def vllm_setup(python: str, threads: int) -> dict:
    """vLLM's version and the environment its server runs with: OpenMP threads bound to ``threads`` cores."""
    out = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"--vllm-python {python} cannot import vllm: {out.stderr.strip().splitlines()[-1:]}")
    env = {"VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}" if threads > 1 else "0", "VLLM_CPU_KVCACHE_SPACE": "2"}
    return {"version": out.stdout.strip(), "env": env, "omp_threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float32"],
        help="Default: bfloat16 where the CPU has native bf16 matmuls (AVX-512 BF16, AMX), else float32.",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, baseline and server alike.")
    parser.add_argument("--vllm-python", required=True, help="A Python with vllm installed (separate venv).")
    args = parser.parse_args()
    from leptonkit.registry import Registry
    from leptonkit.versions import cpu_supports_bf16

    args.dtype = args.dtype or ("bfloat16" if cpu_supports_bf16() else "float32")
    info, vllm = machine(), vllm_setup(args.vllm_python, args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "model", Path(tmp) / "home"
        build_model(folder)
        version = Registry(home).register(str(folder), name="bench-llama", task="generation")
        result = {
            "model": {"parameters": version.parameters, "layers": 6, "hidden": 384, "dtype": args.dtype},
            "threads": {"leptonkit_torch_threads": args.threads, "static_generate_torch_threads": args.threads},
            "vllm_setup": vllm,
            "static_generate": static_generate(folder, args.dtype, args.threads, 32, 32, 64),
        }
        flags = ["--dtype", args.dtype, "--max-num-seqs", "64", "--threads", str(args.threads)]
        with contextlib.ExitStack() as stack:
            servers = {
                "leptonkit": stack.enter_context(leptonkit_server(home, "bench-llama", *flags)),
                "leptonkit_compiled": stack.enter_context(leptonkit_server(home, "bench-llama", *flags, "--compile")),
            }
            # started last: the leptonkit servers idle meanwhile
            servers["vllm"] = stack.enter_context(vllm_server(args.vllm_python, folder, args.dtype, vllm["env"]))
            measured = workloads({name: url for name, (url, _) in servers.items()}, "bench-llama")
            for name, (_, cold) in servers.items():
                result[name] = {"cold_start_s": cold, **measured[name]}
    vllm_tps = result["vllm"]["batch_32x32x64"]["output_throughput"]
    vllm_tpot = result["vllm"]["single_stream"]["tpot_ms"]["mean"]
    result["ratios"] = {}
    for name in ("leptonkit", "leptonkit_compiled"):
        batch, single = result[name]["batch_32x32x64"], result[name]["single_stream"]
        result["ratios"] |= {
            f"{name}_vs_vllm_output_throughput": batch["output_throughput"] / vllm_tps,
            f"{name}_vs_vllm_single_stream_tpot": single["tpot_ms"]["mean"] / vllm_tpot,
            f"{name}_vs_static_generate": batch["output_throughput"] / result["static_generate"]["output_throughput"],
        }
    write_result("serve_throughput", result, info)
    print(json.dumps(result["ratios"], indent=2))


if __name__ == "__main__":
    main()
