"""``leptonkit deploy``: run the server as Ray Serve replicas, or render Kubernetes manifests for it."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Deploy served models on Ray Serve or Kubernetes.", no_args_is_help=True)

# --- Ray Serve: deploy ray, status, update, stop ---

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
