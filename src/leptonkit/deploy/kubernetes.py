"""Kubernetes manifests for ``leptonkit serve``: a Kustomize base rendered from registry references.

:func:`render` writes, into one folder, ``kustomization.yaml`` and the resources it lists:

- ``deployment.yaml``: the server container (``leptonkit serve /models/NAME ... --host 0.0.0.0 --auth on``) with
  a startup probe and the liveness probe on ``/health`` and the readiness probe on ``/ready``; requests and limits;
  non-root user 10001, read-only root filesystem, every capability dropped. What the server writes goes to
  ``emptyDir`` volumes: ``LEPTONKIT_HOME`` (``/var/lib/leptonkit``: the registry database with the API keys, the
  audit log) and ``/tmp`` (caches; ``HOME`` points there). A GPU pod also gets a memory-backed ``/dev/shm``.
- ``service.yaml`` (port ``http``), ``pdb.yaml`` (one pod unavailable at a time), ``networkpolicy.yaml`` (ingress on
  the serving port only, no egress: models are local and ``HF_HUB_OFFLINE=1``), ``servicemonitor.yaml`` (Prometheus
  operator; scrapes ``/metrics`` with a bearer key from a Secret), and with ``hpa`` ``hpa.yaml`` (CPU utilisation)
  plus the Kustomize component ``components/queue-depth`` that adds the queue-depth metric
  (``leptonkit_num_requests_waiting``, served to the HPA by the Prometheus adapter with the rule in
  ``prometheus-adapter-rules.yaml`` next to it).

How the server behaves, and the settings that follow from it (``serve/server.py``, ``serve/routes/admin.py``):
models load in the app's lifespan *before* uvicorn listens, so nothing answers while a pod loads: the startup probe
gives loading ``startup_seconds``. ``/health`` answers 200 whenever the process serves HTTP; ``/ready`` answers 503
while a generator's waiting queue is full, so a saturated pod leaves the Service without being restarted. On
SIGTERM uvicorn stops listening, lets in-flight requests finish for ``--grace-period`` seconds, then unloads the
models and exits 0. Because endpoints are removed while the pod is already terminating, a ``preStop`` sleep keeps
it accepting until kube-proxy and ingresses have seen the removal; ``terminationGracePeriodSeconds`` is that sleep
plus the grace period plus :data:`UNLOAD_SECONDS`.

API keys: the server checks keys in ``LEPTONKIT_HOME/registry.db`` (``security/keys.py``). The Secret
``NAME-api-keys`` holds such a file (made with ``leptonkit keys create`` in a home of its own); an init container
copies it into the writable home, because SQLite must write next to its database. Revoking a key means updating the
Secret and restarting the pods (``kubectl rollout restart``). The Secret ``NAME-metrics-key`` holds one key
(``token``) for Prometheus. Neither Secret is rendered: keys never go into manifests.

Model files: the manifests expect them **baked into the image**, at ``/models/NAME`` for each reference (the plain
folders ``leptonkit models export`` writes, added on top of the server image by ``deploy/docker/Dockerfile.models``).
An image is then one immutable, versioned unit, pods start without network access, and a rollback is an image
tag. The alternative, for models too large to rebuild images for, is an init container that copies a registry
export from shared storage into an ``emptyDir`` at ``/models`` (for example from a ``ReadOnlyMany`` volume holding
``leptonkit models export`` folders); it is not rendered here: add it in an overlay as a patch of the Deployment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leptonkit.errors import InvalidInputError
from leptonkit.monitor.metrics import WAITING
from leptonkit.registry import Registry
from leptonkit.registry.artifacts import folder_kind
from leptonkit.serve.config import ServeConfig

PORT = 8000
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?")  # DNS-1123, short enough for the "-metrics-key" suffix
USER_ID = 10001
HOME = "/var/lib/leptonkit"
MODELS = "/models"
KEYS_MOUNT = "/etc/leptonkit/api-keys"
PRESTOP_SECONDS = 5  # endpoint removal reaching kube-proxy and ingresses takes a few seconds
UNLOAD_SECONDS = 15  # after the drain: the lifespan stops the engines (joins their threads) and the process exits
STARTUP_PERIOD = 5
QUEUE_METRIC = WAITING._name  # the gauge the HPA example scales on: requests waiting per model
ADAPTER_RULES = "components/queue-depth/prometheus-adapter-rules.yaml"
HEADERS = {
    ADAPTER_RULES: "Values for the prometheus-adapter Helm chart (helm upgrade prometheus-adapter ... -f FILE):\n"
    "it serves the queue gauge as the pods metric that the queue-depth component's HPA reads.\n"
    "Not a Kubernetes resource.",
    "components/queue-depth/kustomization.yaml": "Add to an overlay (components: [PATH/components/queue-depth])\n"
    "once the Prometheus adapter serves the queue metric: the HPA then also scales on requests waiting per pod.",
}
DEFAULT_RESOURCES = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}


class _PlainDumper(yaml.SafeDumper):
    """Writes a dict used twice (the containers' security context) in full each time, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class ServedModel:
    """A model as the pod serves it: its name (the folder under ``/models`` and the served model id) and the pinned
    reference or folder it was rendered from."""

    name: str
    source: str

    @property
    def path(self) -> str:
        return f"{MODELS}/{self.name}"


def served_models(refs: Sequence[str], registry: Registry | None = None) -> list[ServedModel]:
    """Resolve registry references (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``) or model folders, pinned now."""
    if not refs:
        raise InvalidInputError("no model to deploy", hint="name at least one registry reference")
    registry = registry or Registry()
    models = []
    for ref in refs:
        folder = Path(ref).expanduser().resolve()
        if folder.is_dir():
            kind, model = folder_kind(folder), ServedModel(folder.name, str(folder))
        elif ref.startswith("builtin:"):
            raise InvalidInputError(
                f"{ref} is not in the registry", hint=f"import it first: leptonkit models import {ref} --name NAME"
            )
        else:
            version = registry.get(ref)
            kind, model = version.kind, ServedModel(version.name, version.ref)
        if kind == "adapter":
            raise InvalidInputError(
                f"{ref} is an adapter", hint="deploy its base model; adapters load at run time (POST /v1/adapters)"
            )
        models.append(model)
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"model name {', '.join(twice)} is deployed twice", hint="deploy one version per name")
    return models


def parse_range(text: str) -> tuple[int, int]:
    """``MIN:MAX`` of ``--hpa``, with 1 <= MIN <= MAX."""
    low, sep, high = text.partition(":")
    try:
        bounds = int(low), int(high)
    except ValueError:
        bounds = (0, 0)
    if not sep or not 1 <= bounds[0] <= bounds[1]:
        raise InvalidInputError(f"--hpa {text}: expected MIN:MAX with 1 <= MIN <= MAX", hint="for example --hpa 2:8")
    return bounds


def termination_grace_seconds(grace_period: float) -> int:
    """What Kubernetes must wait after deciding to stop a pod: the preStop sleep, the drain, the unload."""
    return PRESTOP_SECONDS + int(-(-grace_period // 1)) + UNLOAD_SECONDS


def manifests(
    refs: Sequence[str],
    *,
    image: str,
    name: str = "leptonkit",
    replicas: int = 1,
    hpa: tuple[int, int] | None = None,
    gpu: int = 0,
    resources: dict[str, dict[str, str]] | None = None,
    grace_period: float = ServeConfig.model_fields["grace_period"].default,
    startup_seconds: int = 600,
    queue_target: int = 16,
    registry: Registry | None = None,
) -> dict[str, dict[str, Any]]:
    """The Kustomize base as ``{relative path: object}`` (see the module's docstring); nothing is written."""
    if not image or not image.strip():
        raise InvalidInputError("deploy k8s needs --image", hint="the server image, e.g. --image registry/leptonkit:1")
    if not NAME.fullmatch(name):
        raise InvalidInputError(
            f"--name {name!r} is not a Kubernetes name", hint="1-50 lowercase letters, digits and '-', e.g. leptonkit"
        )
    if replicas < 1 or gpu < 0 or startup_seconds < STARTUP_PERIOD or grace_period < 0:
        raise InvalidInputError("replicas must be >= 1, gpu >= 0, grace period >= 0, startup seconds >= 5")
    models = served_models(refs, registry)
    labels = {"app.kubernetes.io/name": "leptonkit", "app.kubernetes.io/instance": name}
    resources = _resources(resources or DEFAULT_RESOURCES, gpu)
    objects = {
        "deployment.yaml": _deployment(name, labels, image, models, None if hpa else replicas, gpu, resources,
                                       grace_period, startup_seconds),
        "service.yaml": _service(name, labels),
        "pdb.yaml": _resource("policy/v1", "PodDisruptionBudget", name, labels,
                              {"maxUnavailable": 1, "selector": {"matchLabels": labels}}),
        "networkpolicy.yaml": _network_policy(name, labels),
        "servicemonitor.yaml": _service_monitor(name, labels),
    }  # fmt: skip
    if hpa:
        objects["hpa.yaml"] = _hpa(name, labels, hpa, [_cpu_metric()])
        patch = _hpa(name, labels, hpa, [_cpu_metric(), _queue_metric(queue_target)])
        objects |= {
            "components/queue-depth/kustomization.yaml": {
                "apiVersion": "kustomize.config.k8s.io/v1alpha1",
                "kind": "Component",
                "patches": [{"path": "hpa-queue-depth.yaml"}],
            },
            "components/queue-depth/hpa-queue-depth.yaml": patch,
            ADAPTER_RULES: _adapter_rules(),
        }
    objects["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [path for path in objects if "/" not in path],
    }
    return objects


def render(refs: Sequence[str], *, out: str | Path, **options: Any) -> list[Path]:
    """Write the Kustomize base of :func:`manifests` (``options``: its keywords) into ``out``; returns the files
    written.

    ``hpa=(MIN, MAX)`` autoscales on CPU (and leaves ``replicas`` to the autoscaler); ``gpu`` asks for that many
    ``nvidia.com/gpu``; ``resources`` replaces the default requests and limits (Kubernetes' own shape)."""
    import yaml

    objects = manifests(refs, **options)
    root = Path(out).expanduser()
    written = []
    for relative, obj in objects.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "".join(f"# {line}\n" for line in HEADERS.get(relative, "").splitlines())
        path.write_text(header + yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False))
        written.append(path)
    return written


def _resource(api: str, kind: str, name: str, labels: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "labels": dict(labels)}, "spec": spec}


def _resources(resources: dict[str, dict[str, str]], gpu: int) -> dict[str, dict[str, str]]:
    merged = {part: dict(resources.get(part, {})) for part in ("requests", "limits")}
    if gpu:
        for part in merged.values():
            part["nvidia.com/gpu"] = str(gpu)
    return {part: values for part, values in merged.items() if values}


def _threads(resources: dict[str, dict[str, str]]) -> list[str]:
    """``--threads N`` for a whole-CPU limit: torch would otherwise start one thread per core of the node."""
    cpu = resources.get("limits", {}).get("cpu", "")
    return ["--threads", cpu] if cpu.isdigit() and int(cpu) >= 1 else []


def _deployment(
    name: str,
    labels: dict[str, str],
    image: str,
    models: list[ServedModel],
    replicas: int | None,
    gpu: int,
    resources: dict[str, dict[str, str]],
    grace_period: float,
    startup_seconds: int,
) -> dict[str, Any]:
    args = ["serve", *(m.path for m in models), "--host", "0.0.0.0", "--port", str(PORT), "--auth", "on"]
    args += ["--grace-period", f"{grace_period:g}", *_threads(resources)]
    locked = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = [{"name": "home", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "api-keys", "secret": {"secretName": f"{name}-api-keys", "defaultMode": 0o440}},
    ]
    if gpu:  # vLLM's workers and torch's data loaders share tensors through /dev/shm (64 MiB by default)
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    server = {
        "name": "server",
        "image": image,
        "args": args,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "LEPTONKIT_HOME", "value": HOME},
            {"name": "HOME", "value": "/tmp"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": resources,
        "startupProbe": probe("/health", STARTUP_PERIOD, startup_seconds // STARTUP_PERIOD),
        "readinessProbe": probe("/ready", 5, 2),
        "livenessProbe": probe("/health", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": locked,
        "volumeMounts": mounts,
    }
    keys = {
        "name": "api-keys",
        "image": image,
        "command": ["cp", f"{KEYS_MOUNT}/registry.db", f"{HOME}/registry.db"],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        "securityContext": locked,
        "volumeMounts": [{"name": "home", "mountPath": HOME}, {"name": "api-keys", "mountPath": KEYS_MOUNT}],
    }
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": termination_grace_seconds(grace_period),
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [keys],
        "containers": [server],
        "volumes": volumes,
    }
    if gpu:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {
                "labels": dict(labels),
                "annotations": {"leptonkit.dev/models": ",".join(m.source for m in models)},
            },
            "spec": pod,
        },
    }
    if replicas is not None:  # with an autoscaler the HPA owns the count: a replicas field would reset it on apply
        spec = {"replicas": replicas, **spec}
    return _resource("apps/v1", "Deployment", name, labels, spec)


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    spec = {
        "type": "ClusterIP",
        "selector": labels,
        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
    }
    return _resource("v1", "Service", name, labels, spec)


def _network_policy(name: str, labels: dict[str, str]) -> dict[str, Any]:
    spec = {
        "podSelector": {"matchLabels": labels},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": PORT}]}],
        "egress": [],
    }
    return _resource("networking.k8s.io/v1", "NetworkPolicy", name, labels, spec)


def _service_monitor(name: str, labels: dict[str, str]) -> dict[str, Any]:
    endpoint = {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "authorization": {"type": "Bearer", "credentials": {"name": f"{name}-metrics-key", "key": "token"}},
    }
    spec = {"selector": {"matchLabels": labels}, "endpoints": [endpoint]}
    return _resource("monitoring.coreos.com/v1", "ServiceMonitor", name, labels, spec)


def _cpu_metric() -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }


def _queue_metric(target: int) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": QUEUE_METRIC},
            "target": {"type": "AverageValue", "averageValue": str(target)},
        },
    }


def _hpa(name: str, labels: dict[str, str], bounds: tuple[int, int], metrics: list[dict]) -> dict[str, Any]:
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": bounds[0],
        "maxReplicas": bounds[1],
        "metrics": metrics,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }
    return _resource("autoscaling/v2", "HorizontalPodAutoscaler", name, labels, spec)


def _adapter_rules() -> dict[str, Any]:
    """Values for the prometheus-adapter Helm chart: the queue gauge per pod (summed over its models)."""
    rule = {
        "seriesQuery": f'{QUEUE_METRIC}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{QUEUE_METRIC}$", "as": QUEUE_METRIC},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }
    return {"rules": {"custom": [rule]}}
