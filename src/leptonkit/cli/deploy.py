"""``leptonkit deploy``: run the server as Ray Serve replicas, or render Kubernetes manifests for it."""

from __future__ import annotations

from pathlib import Path

import typer

from leptonkit.cli.output import parse_key_values

app = typer.Typer(help="Deploy served models on Ray Serve or Kubernetes.", no_args_is_help=True)

# --- Ray Serve: deploy ray, status, update, stop ---


@app.command("ray")
def ray_deploy(
    refs: list[str] = typer.Argument(..., help="Registry references (NAME, NAME:VERSION, NAME@ALIAS) or HF folders."),
    replicas: int | None = typer.Option(None, "--replicas", help="Fixed number of replicas (default 1)."),
    autoscale: str | None = typer.Option(None, "--autoscale", help="MIN:MAX replicas, scaled on ongoing requests."),
    target_ongoing_requests: float = typer.Option(
        2.0, "--target-ongoing-requests", help="Requests in flight per replica the autoscaler aims at."
    ),
    upscale_delay: float = typer.Option(30.0, "--upscale-delay", help="Seconds of high load before scaling up."),
    downscale_delay: float = typer.Option(600.0, "--downscale-delay", help="Seconds of low load before scaling down."),
    num_cpus: float = typer.Option(1.0, "--num-cpus", help="CPUs per replica (also its torch threads)."),
    num_gpus: float = typer.Option(0.0, "--num-gpus", help="GPUs per replica."),
    address: str | None = typer.Option(
        None, "--address", help="auto, HOST:PORT or ray://HOST:PORT (default: start a local cluster on 127.0.0.1)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the HTTP proxy binds."),
    port: int = typer.Option(8000, "--port", help="Port of the HTTP proxy (one per cluster)."),
    name: str = typer.Option("leptonkit", "--name", help="Name of the Ray Serve application."),
    adapter: list[str] = typer.Option([], "--adapter", help="NAME=REF: a LoRA adapter to serve, repeatable."),
    engine: str = typer.Option("auto", "--engine", help="auto, native or vllm."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vLLM: GPUs per layer, per replica."),
    pipeline_parallel_size: int = typer.Option(1, "--pipeline-parallel-size", help="vLLM: GPU stages per replica."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bfloat16 or float32."),
    auth: str | None = typer.Option(None, "--auth", help="on or off (default: on unless bound to loopback)."),
    metrics_public: bool = typer.Option(False, "--metrics-public", help="Serve /metrics without an API key."),
    rate_limit_rpm: int | None = typer.Option(None, "--rate-limit-rpm", help="Requests per minute per key."),
    rate_limit_tpm: int | None = typer.Option(None, "--rate-limit-tpm", help="Tokens per minute per key."),
    max_streams_per_key: int | None = typer.Option(None, "--max-streams-per-key", help="Concurrent streams per key."),
    max_tokens_cap: int | None = typer.Option(None, "--max-tokens-cap", help="Largest max_tokens allowed."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens", help="Longest prompt in tokens."),
    max_num_seqs: int = typer.Option(64, "--max-num-seqs", help="Sequences decoded together per replica."),
    request_timeout: float = typer.Option(600.0, "--request-timeout", help="Seconds before a request answers 504."),
    grace_period: float = typer.Option(30.0, "--grace-period", help="Seconds a stopping replica drains."),
    safety_redact_pii: bool = typer.Option(False, "--safety-redact-pii", help="Mask personal data in outputs."),
    safety_blocklist: list[str] = typer.Option([], "--safety-blocklist", help="Regex refusing input/output; repeat."),
) -> None:
    """Serve REFs as a Ray Serve application: the same API, keys, limits and metrics, one engine per replica."""
    options = dict(locals())  # the serving options are named as ServeConfig's fields
    from leptonkit.cli.output import print_json
    from leptonkit.cli.serve import serve_config
    from leptonkit.deploy import ray_serve
    from leptonkit.errors import InvalidInputError
    from leptonkit.serve.config import ServeConfig

    fields = {k: v for k, v in options.items() if k in ServeConfig.model_fields}
    fields |= {"models": refs, "adapters": parse_key_values(adapter, "adapter")}
    if replicas is not None and autoscale is not None:
        raise InvalidInputError("--replicas and --autoscale both set the replica count", hint="pass one of them")
    config = serve_config(fields)
    info = ray_serve.deploy(
        config,
        name=name,
        replicas=replicas or 1,
        autoscale=ray_serve.parse_autoscale(autoscale) if autoscale else None,
        target_ongoing_requests=target_ongoing_requests,
        upscale_delay_s=upscale_delay,
        downscale_delay_s=downscale_delay,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        address=address,
    )
    typer.echo(f"{name}: {len(info['replicas'])} replica(s) of {', '.join(info['models'])} at {info['url']}", err=True)
    print_json(info)


@app.command("status")
def ray_status(
    name: str | None = typer.Argument(None, help="One application (default: every leptonkit application)."),
    address: str | None = typer.Option(None, "--address", help="The Ray cluster (default: the local one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Ray Serve applications: their replicas, each replica's state and requests in flight."""
    from leptonkit.cli.output import print_json, print_table
    from leptonkit.deploy import ray_serve

    apps = ray_serve.status(name, address=address)
    if as_json:
        print_json(apps)
        return
    rows = [
        [app["name"], app["status"], ", ".join(app["models"]), r["id"], r["state"], r["pid"], r["in_flight"]]
        for app in apps
        for r in app["replicas"] or [{"id": "-", "state": "-", "pid": "-", "in_flight": "-"}]
    ]
    print_table(None, ["app", "status", "models", "replica", "state", "pid", "in flight"], rows)


@app.command("update")
def ray_update(
    name: str = typer.Argument(..., help="The application to update."),
    replicas: int | None = typer.Option(None, "--replicas", help="New fixed replica count."),
    autoscale: str | None = typer.Option(None, "--autoscale", help="New MIN:MAX autoscaling range."),
    address: str | None = typer.Option(None, "--address", help="The Ray cluster (default: the local one)."),
) -> None:
    """Re-resolve the app's aliases and replace its replicas one at a time (no request fails); or rescale it."""
    from leptonkit.cli.output import print_json
    from leptonkit.deploy import ray_serve

    result = ray_serve.update(
        name,
        address=address,
        replicas=replicas,
        autoscale=ray_serve.parse_autoscale(autoscale) if autoscale else None,
    )
    for ref, (old, new) in result["changed"].items():
        typer.echo(f"{ref}: {old} -> {new}", err=True)
    print_json(result)


@app.command("stop")
def ray_stop(
    name: str = typer.Argument(..., help="The application to delete."),
    address: str | None = typer.Option(None, "--address", help="The Ray cluster (default: the local one)."),
) -> None:
    """Delete the application (and the local Ray cluster leptonkit started, once no application is left)."""
    from leptonkit.deploy import ray_serve

    stopped_cluster = ray_serve.stop(name, address=address)
    typer.echo(f"stopped {name}" + (" and the local Ray cluster" if stopped_cluster else ""), err=True)


# --- Kubernetes: deploy k8s ---


@app.command("k8s")
def k8s(
    refs: list[str] = typer.Argument(..., help="Registry references (NAME, NAME:VERSION, NAME@ALIAS) or folders."),
    image: str | None = typer.Option(None, "--image", help="The server image with the models under /models."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the Kustomize base."),
    name: str = typer.Option("leptonkit", "--name", help="Name of the Deployment, Service and the rest."),
    replicas: int = typer.Option(1, "--replicas", help="Pods, without --hpa."),
    hpa: str | None = typer.Option(None, "--hpa", help="MIN:MAX: autoscale on CPU (plus a queue-depth component)."),
    gpu: int = typer.Option(0, "--gpu", help="nvidia.com/gpu per pod."),
    cpu: str = typer.Option("2", "--cpu", help="CPU request and limit per pod."),
    memory: str = typer.Option("4Gi", "--memory", help="Memory request and limit per pod."),
    grace_period: float = typer.Option(30.0, "--grace-period", help="Seconds SIGTERM waits for in-flight requests."),
) -> None:
    """Render Kubernetes manifests (a Kustomize base) that serve REFs from an image."""
    from leptonkit.deploy import kubernetes
    from leptonkit.errors import InvalidInputError

    if out is None:
        raise InvalidInputError("deploy k8s needs --out", hint="the folder to write the manifests to, e.g. --out k8s")
    if hpa is not None and replicas != 1:
        raise InvalidInputError("--replicas and --hpa both set the pod count", hint="pass one of them")
    size = {"cpu": cpu, "memory": memory}
    files = kubernetes.render(
        refs,
        image=image or "",  # missing: render says so in one line
        out=out,
        name=name,
        replicas=replicas,
        hpa=kubernetes.parse_range(hpa) if hpa else None,
        gpu=gpu,
        resources={"requests": size, "limits": dict(size)},
        grace_period=grace_period,
    )
    typer.echo(f"wrote {len(files)} files to {out}: kubectl apply -k {out}")
