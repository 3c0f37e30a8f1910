"""``leptonkit deploy``: run the server as Ray Serve replicas, or render Kubernetes manifests for it."""

from __future__ import annotations

import typer

app = typer.Typer(help="Deploy served models on Ray Serve or Kubernetes.", no_args_is_help=True)

# --- Ray Serve: deploy ray, status, update, stop ---

# --- Kubernetes: deploy k8s ---
