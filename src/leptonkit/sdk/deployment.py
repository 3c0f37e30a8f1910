"""``DeployModel(...).deploy(backend=...)``: serve registry models and custom services, and hold the result as a
:class:`Deployment` (``.url``, ``.client()``, ``.status()``, ``.scale(n)``, ``.update()``, ``.stop()``; a context
manager that stops it).

Backends, each the function its CLI command calls:

- ``"local"``: a real ``leptonkit serve`` subprocess on a free port of 127.0.0.1 (one replica; ``resources`` sets its
  ``--threads``). ``update()`` restarts it on whatever the refs name now (an alias that moved).
- ``"ray"``: :func:`leptonkit.deploy.ray_serve.deploy` (``leptonkit deploy ray``), ``replicas`` replicas of
  ``num_cpus``/``num_gpus`` from ``resources``; ``scale`` and ``update`` are :func:`~leptonkit.deploy.ray_serve.update`.
- ``"k8s"``: :func:`leptonkit.deploy.kubernetes.render` (``leptonkit deploy k8s``) writes the manifests (``out=``,
  ``image=``) with the shape's requests and limits; applying them is ``kubectl``'s job, so ``url`` is ``None``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from leptonkit.client import Client
from leptonkit.config import home as default_home
from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.registry.store import Registry
from leptonkit.sdk.model import Model
from leptonkit.sdk.resources import ResourceShape, resource_shape
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.http import free_port
from leptonkit.serve.services import Service, service_source

BACKENDS = ("local", "ray", "k8s")
START_TIMEOUT_S = 180.0


class DeployModel:
    """What to serve and how big: models (refs, :class:`Model` objects) and custom services (:class:`Service`
    classes or ``"FILE.py:CLASS"``), ``replicas``, ``resources`` (a shape name), and any ``leptonkit serve`` option
    (``auth="on"``, ``rate_limit_rpm=600``...).

    >>> job = DeployModel("sentiment@prod", replicas=2, resources="cpu.2x", rate_limit_rpm=600)
    >>> job.models, job.replicas, job.resources.ray_options(), job.options
    (['sentiment@prod'], 2, {'num_cpus': 2.0, 'num_gpus': 0}, {'rate_limit_rpm': 600})
    """

    def __init__(
        self,
        target: str | Model | type[Service] | Sequence[str | Model | type[Service]],
        *,
        replicas: int = 1,
        resources: str | ResourceShape | None = None,
        name: str | None = None,
        registry: Registry | None = None,
        **options: Any,
    ) -> None:
        targets = list(target) if isinstance(target, list | tuple) else [target]
        self.models: list[str] = []
        self.services: list[str] = []
        for item in targets:
            if isinstance(item, type) and issubclass(item, Service):
                self.services.append(service_source(item))
            elif isinstance(item, Model):
                self.models.append(item.ref)
            elif isinstance(item, str) and ".py:" in item:
                self.services.append(item)
            elif isinstance(item, str):
                self.models.append(item)
            else:
                raise InvalidInputError(
                    f"cannot deploy {item!r}", hint="give refs, Models or leptonkit.Service classes"
                )
        if replicas < 1:
            raise InvalidInputError(f"replicas={replicas}: expected at least 1", param="replicas")
        self.replicas = replicas
        self.resources = resource_shape(resources)
        self.registry = registry or Registry()
        self.name = name or _app_name(self.models, self.services)
        self.options = options

    def config(self, **fields: Any) -> ServeConfig:
        """The server's :class:`ServeConfig` (any ``leptonkit serve`` option passed to the constructor)."""
        threads = self.resources.threads if self.resources else None
        settings = {"threads": threads, "home": str(self.registry.home)} | self.options | fields
        return ServeConfig(models=self.models, services=self.services, **settings)

    def deploy(self, backend: str = "local", **backend_options: Any) -> Deployment:
        """Start serving on ``backend`` (``local``, ``ray`` or ``k8s``; see the module) and return the deployment."""
        if backend not in BACKENDS:
            raise InvalidInputError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
        deployment = {"local": LocalDeployment, "ray": RayDeployment, "k8s": KubernetesDeployment}[backend](self)
        deployment.start(**backend_options)
        return deployment


def _app_name(models: list[str], services: list[str]) -> str:
    first = models[0].split("@")[0].split(":")[0] if models else services[0].rsplit(":", 1)[-1].lower()
    return Path(first).name or "leptonkit"


class Deployment:
    """A running (or rendered) deployment; ``with DeployModel(...).deploy() as d:`` stops it at the end."""

    backend = ""

    def __init__(self, job: DeployModel) -> None:
        self.job = job
        self.url: str | None = None

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.job.name!r}, url={self.url!r})"

    def client(self, api_key: str | None = None, timeout: float = 600) -> Client:
        """A :class:`leptonkit.Client` for this deployment's URL."""
        if self.url is None:
            raise InvalidInputError(f"the {self.backend} deployment {self.job.name} has no URL here")
        return Client(self.url, api_key=api_key, timeout=timeout)

    def start(self, **options: Any) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def scale(self, replicas: int) -> Deployment:
        raise NotImplementedError

    def update(self) -> Deployment:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class LocalDeployment(Deployment):
    """``leptonkit serve`` in a subprocess on 127.0.0.1 (one replica)."""

    backend = "local"

    def __init__(self, job: DeployModel) -> None:
        super().__init__(job)
        self.process: subprocess.Popen | None = None
        self._log: Any = None

    def start(self, *, port: int | None = None, timeout: float = START_TIMEOUT_S) -> None:
        if self.job.replicas != 1:
            raise InvalidInputError(
                f"the local backend runs one replica, not {self.job.replicas}", hint="use backend='ray' for replicas"
            )
        if self.job.resources is not None:
            self.job.resources.check_local()
        config = self.job.config(host="127.0.0.1", port=port or free_port())
        command = [sys.executable, "-m", "leptonkit.cli.main", "serve", *config.models]
        command += [arg for source in config.services for arg in ("--service", source)]
        command += _flags(config)
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (closed by stop())
        env = os.environ | {"LEPTONKIT_HOME": str(self.job.registry.home)}
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{config.port}"
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self._log.seek(0)
                lines = [line for line in self._log.read().splitlines() if line.strip()]
                self.stop()
                raise LeptonkitError(f"leptonkit serve exited with {code}: {lines[-1] if lines else 'no output'}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LeptonkitError(f"leptonkit serve did not become ready within {timeout:g} s")
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        running = self.process is not None and self.process.poll() is None
        ready = None
        if running:
            try:
                ready = httpx.get(f"{self.url}/ready", timeout=5).json()
            except httpx.HTTPError:
                ready = None
        return {
            "backend": "local",
            "name": self.job.name,
            "url": self.url,
            "running": running,
            "pid": self.process.pid if self.process else None,
            "ready": ready,
        }

    def scale(self, replicas: int) -> Deployment:
        if replicas != 1:
            raise InvalidInputError("the local backend runs one replica", hint="use backend='ray' to scale")
        return self

    def update(self) -> Deployment:
        """Restart the server on what the refs name now (an alias that moved), on the same port."""
        port = int(self.url.rsplit(":", 1)[1])
        self.stop()
        self.start(port=port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class RayDeployment(Deployment):
    """The app on Ray Serve (``leptonkit.deploy.ray_serve``)."""

    backend = "ray"

    def start(self, *, address: str | None = None, port: int | None = None, **options: Any) -> None:
        ray_serve = _ray_serve()
        self.address = address
        shape = self.job.resources.ray_options() if self.job.resources else {}
        config = self.job.config(port=port if port is not None else free_port())
        info = ray_serve.deploy(
            config, name=self.job.name, replicas=self.job.replicas, address=address, **shape, **options
        )
        self.url = info["url"].rstrip("/")

    def status(self) -> dict[str, Any]:
        (found,) = _ray_serve().status(self.job.name, address=self.address, home=self.job.registry.home)
        return {"backend": "ray"} | found

    def scale(self, replicas: int) -> Deployment:
        _ray_serve().update(self.job.name, address=self.address, home=self.job.registry.home, replicas=replicas)
        self.job.replicas = replicas
        return self

    def update(self) -> Deployment:
        _ray_serve().update(self.job.name, address=self.address, home=self.job.registry.home)
        return self

    def stop(self) -> None:
        _ray_serve().stop(self.job.name, address=self.address, home=self.job.registry.home)


def _ray_serve() -> Any:
    try:
        from leptonkit.deploy import ray_serve
    except ImportError as err:
        raise InvalidInputError(
            f"the Ray backend is not available here ({err})", hint="pip install 'leptonkit[deploy]'"
        ) from None
    return ray_serve


class KubernetesDeployment(Deployment):
    """Kubernetes manifests rendered by :func:`leptonkit.deploy.kubernetes.render` into ``out``."""

    backend = "k8s"

    def start(self, *, image: str, out: str | os.PathLike[str] | None = None, **options: Any) -> None:
        if self.job.services:
            raise InvalidInputError(
                "the k8s renderer serves registry models only; custom services are not baked into its image",
                hint="deploy services locally or on Ray",
            )
        self.image = image
        self.out = Path(out) if out is not None else default_home() / "deploy" / "k8s" / self.job.name
        self.options = options
        self._render()

    def _render(self) -> None:
        from leptonkit.deploy import kubernetes

        shape = self.job.resources
        self.files = kubernetes.render(
            self.job.models,
            image=self.image,
            out=self.out,
            name=self.job.name,
            replicas=self.job.replicas,
            gpu=shape.gpus if shape else 0,
            resources=shape.kubernetes() if shape else None,
            registry=self.job.registry,
            **self.options,
        )

    def status(self) -> dict[str, Any]:
        return {
            "backend": "k8s",
            "name": self.job.name,
            "manifests": [str(p) for p in self.files],
            "replicas": self.job.replicas,
            "applied": None,
        }

    def scale(self, replicas: int) -> Deployment:
        """Render the manifests again with ``replicas`` (apply them with kubectl)."""
        self.job.replicas = replicas
        self._render()
        return self

    def update(self) -> Deployment:
        """Render again: refs are pinned to the versions they name now."""
        self._render()
        return self

    def stop(self) -> None:
        """Nothing runs here: the manifests stay for ``kubectl delete -k``."""


def _flags(config: ServeConfig) -> list[str]:
    """``leptonkit serve`` flags for the fields of ``config`` that differ from their defaults (the CLI's flags are
    the fields' names; lists repeat their flag)."""
    flags: list[str] = []
    for field, value in config.model_dump().items():
        default = ServeConfig.model_fields[field].get_default(call_default_factory=True)
        if field in ("models", "services", "home") or value == default:
            continue
        option = {"adapters": "--adapter", "safety_unsafe_labels": "--safety-unsafe-label"}.get(
            field, "--" + field.replace("_", "-")
        )
        if isinstance(value, bool):
            flags += [option] if value else []
        elif isinstance(value, dict):
            flags += [arg for key, item in value.items() for arg in (option, f"{key}={item}")]
        elif isinstance(value, list):
            flags += [arg for item in value for arg in (option, str(item))]
        else:
            flags += [option, str(value)]
    return flags
