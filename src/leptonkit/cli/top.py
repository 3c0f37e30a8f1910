"""``leptonkit top URL``: a live view of a running server, read from its ``/metrics``."""

from __future__ import annotations

import os
import time

import typer

from leptonkit.cli.output import JSON_OPTION, console, human_size, print_json


def _fetch(client, url: str):
    import httpx

    from leptonkit.errors import InvalidInputError
    from leptonkit.monitor.summary import parse

    try:
        response = client.get(url)
    except httpx.HTTPError as err:
        raise InvalidInputError(f"cannot reach {url}: {err}", hint="check the URL and that the server runs") from None
    if response.status_code == 401:
        raise InvalidInputError(
            f"{url} needs an API key", hint="pass --key KEY or set LEPTONKIT_API_KEY (or serve --metrics-public)"
        )
    if response.status_code != 200 or "leptonkit_" not in response.text:
        raise InvalidInputError(f"{url} answered {response.status_code}, not leptonkit metrics", param="url")
    return parse(response.text, time.monotonic())


def _table(url: str, summary: dict):
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    rows = [
        ("requests/s", f"{summary['requests_per_s']:.2f}"),
        ("5xx ratio", f"{summary['error_ratio']:.1%}"),
        ("latency p50 / p99", f"{ms(summary['latency_p50_s'])} / {ms(summary['latency_p99_s'])}"),
        ("time to first token p50 / p99", f"{ms(summary['ttft_p50_s'])} / {ms(summary['ttft_p99_s'])}"),
        ("inter-token latency p50", ms(summary["itl_p50_s"])),
        (
            "tokens/s prompt / generated",
            f"{summary['prompt_tokens_per_s']:.1f} / {summary['generated_tokens_per_s']:.1f}",
        ),
        (
            "running / waiting / streams",
            f"{summary['running']:.0f} / {summary['waiting']:.0f} / {summary['streams']:.0f}",
        ),
        ("adapters loaded", f"{summary['adapters_loaded']:.0f}"),
        ("CPU (cores)", f"{summary['cpu_cores']:.2f}"),
        ("resident memory", "-" if summary["rss_bytes"] is None else human_size(int(summary["rss_bytes"]))),
    ]
    if summary["gpu_memory_used_bytes"] is not None:
        rows.append(
            (
                "GPU util / memory",
                f"{summary['gpu_utilization_percent']:.0f}% / {human_size(int(summary['gpu_memory_used_bytes']))}",
            )
        )
    table = Table(title=f"leptonkit top {url}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def top(
    url: str = typer.Argument(..., help="The server's base URL, e.g. http://127.0.0.1:8000"),
    key: str | None = typer.Option(None, "--key", help="API key (default: $LEPTONKIT_API_KEY)."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between scrapes."),
    once: bool = typer.Option(False, "--once", help="Print one view after one interval and exit."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Requests/s, latency percentiles, tokens/s, queue and memory of a running server, refreshed live."""
    import httpx
    from rich.live import Live

    from leptonkit.monitor.summary import summarize

    key = key or os.environ.get("LEPTONKIT_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    metrics_url = url.rstrip("/") + "/metrics"
    with httpx.Client(headers=headers, timeout=10, verify=os.environ.get("SSL_CERT_FILE", True)) as client:
        before = _fetch(client, metrics_url)
        time.sleep(interval)
        after = _fetch(client, metrics_url)
        if json_out or once:
            summary = summarize(before, after)
            if json_out:
                print_json(summary)
            else:
                console.print(_table(url, summary))
            return
        with Live(_table(url, summarize(before, after)), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                before, after = after, _fetch(client, metrics_url)
                live.update(_table(url, summarize(before, after)))
