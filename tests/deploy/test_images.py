"""The container images (``deploy/docker/``), checked without Docker (not available here): multi-stage builds from
the package's wheel with extras that exist, a non-root runtime user matching the pods' ``runAsUser``, the port and
the ``HEALTHCHECK`` path the manifests use. ``test_kubernetes`` runs the ``HEALTHCHECK`` command against a server."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from leptonkit.deploy import kubernetes
from tests.conftest import REPO

DOCKER = REPO / "deploy" / "docker"
SERVER_IMAGES = {"cpu.Dockerfile": "serve", "cuda.Dockerfile": "vllm"}  # image -> the extra it installs


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n\s*", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last:]


def healthcheck_command(path: Path) -> list[str]:
    """The exec-form command of the image's ``HEALTHCHECK ... CMD [...]``."""
    (check,) = [args for op, args in final_stage(path) if op == "HEALTHCHECK"]
    return json.loads(check.split("CMD", 1)[1])


@pytest.mark.parametrize("name", sorted(SERVER_IMAGES))
def test_server_images_are_multi_stage_non_root_and_probe_health_on_the_served_port(name: str) -> None:
    path = DOCKER / name
    steps = instructions(path)
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) == 3 and all(" AS " in s.upper() for s in stages[:-1])  # wheel, venv, runtime
    runtime = dict(final_stage(path)[1:])  # last value of each instruction of the runtime stage
    assert runtime["USER"] == f"{kubernetes.USER_ID}:{kubernetes.USER_ID}" and kubernetes.USER_ID != 0
    assert f"useradd --uid {kubernetes.USER_ID}" in runtime["RUN"]
    assert f"chown {kubernetes.USER_ID}:{kubernetes.USER_ID} {kubernetes.HOME}" in runtime["RUN"]
    assert f"LEPTONKIT_HOME={kubernetes.HOME}" in runtime["ENV"]
    assert runtime["EXPOSE"] == str(kubernetes.PORT)
    assert "COPY --from=venv /opt/leptonkit /opt/leptonkit" in [
        f"COPY {a}" for op, a in final_stage(path) if op == "COPY"
    ]
    command = healthcheck_command(path)
    assert f"http://127.0.0.1:{kubernetes.PORT}/health" in command[-1]
    assert json.loads(runtime["ENTRYPOINT"]) == ["leptonkit"]


@pytest.mark.parametrize(("name", "extra"), sorted(SERVER_IMAGES.items()))
def test_server_images_install_the_wheel_with_an_extra_the_package_declares(name: str, extra: str) -> None:
    steps = instructions(DOCKER / name)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra in extras
    assert any(op == "RUN" and f'leptonkit-*.whl)[{extra}]"' in args for op, args in steps)
    copied = [args.split()[:-1] for op, args in steps if op == "COPY" and "--from" not in args]
    assert all((REPO / source).exists() for sources in copied for source in sources)  # the wheel's sources
    assert any(op == "RUN" and "python -m build --wheel" in args for op, args in steps)


def test_the_cpu_image_takes_torch_from_the_cpu_index_before_the_wheel() -> None:
    runs = [args for op, args in instructions(DOCKER / "cpu.Dockerfile") if op == "RUN"]
    torch = next(i for i, run in enumerate(runs) if "download.pytorch.org/whl/cpu" in run and '"torch==' in run)
    wheel = next(i for i, run in enumerate(runs) if "leptonkit-*.whl" in run)
    assert torch < wheel


def test_the_models_image_puts_exported_folders_where_the_manifests_serve_them() -> None:
    steps = dict(instructions(DOCKER / "models.Dockerfile"))
    assert steps["COPY"] == f"models/ {kubernetes.MODELS}/"
    assert steps["FROM"] == "${BASE}"
