"""``leptonkit serve REF [REF ...]``: the OpenAI-compatible server for any mix of generators and encoders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from leptonkit.cli.output import parse_key_values

if TYPE_CHECKING:
    from leptonkit.serve.config import ServeConfig


def serve(
    refs: list[str] = typer.Argument(
        None, help="Registry references (NAME, NAME:VERSION, NAME@ALIAS) or HF folders (optional with --service)."
    ),
    service: list[str] = typer.Option(
        [], "--service", help="FILE.py:CLASS: a custom leptonkit.Service served beside the models, repeatable."
    ),
    adapter: list[str] = typer.Option([], "--adapter", help="NAME=REF: a LoRA adapter to serve, repeatable."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    engine: str = typer.Option("auto", "--engine", help="auto, native or vllm (auto: vLLM on a GPU when installed)."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto, bfloat16 or float32 (auto: bf16 where native; a quantised version: its own)."
    ),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", help="vLLM: GPUs each layer is split across (one engine, several GPUs)."
    ),
    pipeline_parallel_size: int = typer.Option(
        1, "--pipeline-parallel-size", help="vLLM: GPU groups the layers are split into, run one after another."
    ),
    max_num_seqs: int = typer.Option(64, "--max-num-seqs", help="Sequences decoded together."),
    max_queue: int = typer.Option(256, "--max-queue", help="Waiting sequences (prompts x n) per model before 429."),
    max_batched_tokens: int = typer.Option(2048, "--max-batched-tokens", help="Token budget of one engine step."),
    max_adapters: int = typer.Option(8, "--max-adapters", help="Adapters loaded at once (LRU eviction)."),
    request_timeout: float = typer.Option(600.0, "--request-timeout", help="Seconds before a request answers 504."),
    grace_period: float = typer.Option(30.0, "--grace-period", help="Seconds SIGTERM waits for in-flight requests."),
    encoder_max_batch: int = typer.Option(32, "--encoder-max-batch", help="Inputs per encoder forward."),
    encoder_max_wait_ms: float = typer.Option(5.0, "--encoder-max-wait-ms", help="Encoder batch fill wait."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads per engine."),
    compile: bool = typer.Option(
        False, "--compile", help="Compile Llama-family decode steps (torch.compile) before serving: faster steps."
    ),
    explain_steps: int = typer.Option(32, "--explain-steps", help="Integration steps per explanation (explain: true)."),
    auth: str | None = typer.Option(None, "--auth", help="on or off (default: on unless bound to loopback)."),
    metrics_public: bool = typer.Option(False, "--metrics-public", help="Serve /metrics without an API key."),
    log_content: bool = typer.Option(False, "--log-content", help="Log prompts and outputs, PII-redacted."),
    audit_log: str | None = typer.Option(None, "--audit-log", help="Audit log file (JSON lines)."),
    max_body_bytes: int = typer.Option(1_048_576, "--max-body-bytes", help="Largest request body."),
    max_tokens_cap: int | None = typer.Option(None, "--max-tokens-cap", help="Largest max_tokens allowed."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens", help="Longest prompt in tokens."),
    rate_limit_rpm: int | None = typer.Option(None, "--rate-limit-rpm", help="Requests per minute per key."),
    rate_limit_tpm: int | None = typer.Option(None, "--rate-limit-tpm", help="Tokens per minute per key."),
    max_streams_per_key: int | None = typer.Option(None, "--max-streams-per-key", help="Concurrent streams per key."),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", help="Seconds a client may take to send a request's headers; then closed."
    ),
    keep_alive_timeout: int = typer.Option(5, "--keep-alive-timeout", help="Seconds an idle connection stays open."),
    ssl_certfile: str | None = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
    ssl_keyfile: str | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
    # safety policy (operations engineer): see leptonkit.serve.safety
    safety_redact_pii: bool = typer.Option(False, "--safety-redact-pii", help="Mask personal data in outputs."),
    safety_blocklist: list[str] = typer.Option([], "--safety-blocklist", help="Regex refusing input/output; repeat."),
    safety_classifier: str | None = typer.Option(
        None, "--safety-classifier", help="Registry classifier of unsafe text."
    ),
    safety_unsafe_labels: list[str] = typer.Option(
        ["unsafe", "toxic"], "--safety-unsafe-label", help="Classifier label meaning unsafe; repeatable."
    ),
    safety_threshold: float = typer.Option(0.5, "--safety-threshold", help="Classifier score that flags a text."),
    console: bool = typer.Option(False, "--console", help="Mount the web console at /console (same API keys)."),
) -> None:
    """Serve models over the OpenAI API (plus /v1/classify and /v1/ner) until SIGTERM or Ctrl-C."""
    fields = dict(locals())  # the options, named as ServeConfig's fields
    with_console = fields.pop("console")
    fields |= {"models": fields.pop("refs") or [], "adapters": parse_key_values(fields.pop("adapter"), "adapter")}
    fields["services"] = fields.pop("service")
    from leptonkit.errors import InvalidInputError
    from leptonkit.registry import Registry

    config = serve_config(fields)
    from leptonkit.serve.services import service_spec

    for source in config.services:  # imported and checked before anything loads (route collisions: create_app)
        service_spec(source)
    from leptonkit.serve.engine import vllm

    if config.engine == "vllm" and not vllm.available():
        raise InvalidInputError("--engine vllm needs the vllm package", hint="pip install vllm, or use --engine native")
    vllm.check_parallel(config)
    registry = Registry()
    for ref in [*config.models, *config.adapters.values()]:  # fail in one line before loading anything
        if not ref.startswith("builtin:") and not Path(ref).expanduser().is_dir():
            registry.get(ref)
    from leptonkit.serve.server import serve as run

    mount = _console_setup(config, registry) if with_console else None

    def announce(app) -> None:  # runs once the app is built: a service's route collision has refused it already
        if mount is not None:
            mount(app)
        served = ", ".join(config.models + config.services)
        typer.echo(f"serving {served} on http://{config.host}:{config.port}", err=True)

    run(config, announce)


def serve_config(fields: dict[str, Any]) -> ServeConfig:
    """``ServeConfig(**fields)``, where ``fields`` came from CLI flags: an invalid one is a one-line error naming
    its flag."""
    from pydantic import ValidationError

    from leptonkit.errors import InvalidInputError
    from leptonkit.serve.config import ServeConfig

    try:
        return ServeConfig(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        if not first["loc"]:  # the config as a whole: nothing to serve
            raise InvalidInputError(first["msg"].removeprefix("Value error, "), hint="leptonkit serve REF") from None
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise InvalidInputError(f"{option}: {first['msg']}") from None


def _console_setup(config, registry):
    """``--console``: mount the web console on the serving app, on the same registry, keys and audit log."""
    from leptonkit.console.app import mount_console
    from leptonkit.console.web import ConsoleSettings

    settings = ConsoleSettings(
        home=Path(config.home) if config.home else registry.home,
        same_server=True,
        audit_log=Path(config.audit_log) if config.audit_log else None,
        secure_cookie=config.ssl_certfile is not None,
    )
    return lambda app: mount_console(app, settings)
