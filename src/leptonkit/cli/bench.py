"""``leptonkit bench serve``: streamed load against any OpenAI-compatible server, results as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from leptonkit.cli.output import JSON_OPTION, print_json, print_table

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


@app.command("serve")
def serve(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Server base URL."),
    model: str = typer.Option(
        ..., "--model", help="Model name to request; a comma-separated list is used round-robin."
    ),
    num_prompts: int = typer.Option(32, "--num-prompts", min=1),
    input_len: int = typer.Option(32, "--input-len", min=1, help="Tokens per random prompt."),
    output_len: int = typer.Option(64, "--output-len", min=1, help="Tokens generated per request."),
    request_rate: float = typer.Option(
        float("inf"), "--request-rate", help="Poisson arrivals per second (inf: all at once)."
    ),
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", min=1),
    dataset: str | None = typer.Option(None, "--dataset", help="Prompts file: one per line, or JSONL with prompt."),
    seed: int = typer.Option(0, "--seed"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="LEPTONKIT_API_KEY"),
    output: Path | None = typer.Option(None, "--output", help="Write the results JSON here too."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Measure TTFT, TPOT, inter-token and end-to-end latency, request and token throughput."""
    from leptonkit.bench.serve import BenchSettings, run_benchmark

    settings = BenchSettings(
        url=url,
        model=model,
        num_prompts=num_prompts,
        input_len=input_len,
        output_len=output_len,
        request_rate=request_rate,
        max_concurrency=max_concurrency,
        prompts_file=dataset,
        seed=seed,
        api_key=api_key,
    )
    result = asyncio.run(run_benchmark(settings))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    if json_out:
        print_json(result)
        return
    rows = [["completed / failed", f"{result['completed']} / {result['failed']}"]]
    rows += [["duration (s)", f"{result['duration_s']:.2f}"], ["requests/s", f"{result['request_throughput']:.2f}"]]
    rows += [["output tokens/s", f"{result['output_throughput']:.1f}"]]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        stats = result[key]
        rows.append([f"{key} mean/median/p99", f"{stats['mean']:.1f} / {stats['median']:.1f} / {stats['p99']:.1f}"])
    print_table(f"bench serve {model} @ {url}", ["metric", "value"], rows)
