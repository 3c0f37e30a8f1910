"""``leptonkit deploy k8s``: every rendered manifest validates against the Kubernetes OpenAPI schemas
(``kubernetes-validate``, strict), and the Deployment's probes, ports, keys and drain settings hold on a real server
started with the container's own arguments (models exported as the image bakes them, keys copied as the init
container copies them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from leptonkit.deploy import kubernetes
from leptonkit.errors import InvalidInputError
from tests.conftest import LEPTONKIT
from tests.deploy.test_images import DOCKER, healthcheck_command
from tests.security.server import run_server
from tests.serve.conftest import bearer, sse_event, tiny_generator  # noqa: F401  (tiny_generator: a fixture)

K8S = kubernetes_validate.latest_version()  # the newest release the installed package ships schemas for
CRDS = {"ServiceMonitor"}  # the Prometheus operator's: no schema in Kubernetes' OpenAPI


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory: pytest.TempPathFactory, tiny_generator: Path) -> Path:  # noqa: F811
    from leptonkit.registry import Registry

    home = tmp_path_factory.mktemp("k8s-registry")
    registry = Registry(home)
    version = registry.register(str(tiny_generator), name="tiny", task="generation")
    registry.alias(version.ref, "prod")
    return home


def _render(home: Path, out: Path, **options) -> dict[str, dict]:
    from leptonkit.registry import Registry

    files = kubernetes.render(["tiny@prod"], image="registry.example/leptonkit-tiny:1", out=out,
                              registry=Registry(home), **options)  # fmt: skip
    return {str(path.relative_to(out)): yaml.safe_load(path.read_text()) for path in files}


def _container(objects: dict[str, dict], name: str = "server") -> dict:
    pod = objects["deployment.yaml"]["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] + pod["initContainers"] if c["name"] == name)


@pytest.mark.parametrize("options", [{"replicas": 2}, {"hpa": (2, 6), "gpu": 1}], ids=["cpu", "gpu-hpa"])
def test_every_manifest_validates_against_the_kubernetes_schemas(registry_home, tmp_path, options) -> None:
    objects = _render(registry_home, tmp_path, **options)
    kustomization = objects.pop("kustomization.yaml")
    resources = {path: obj for path, obj in objects.items() if "/" not in path}
    assert sorted(kustomization["resources"]) == sorted(resources)  # every resource listed, nothing else
    expected = {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
    assert {obj["kind"] for obj in resources.values()} == expected | (
        {"HorizontalPodAutoscaler"} if "hpa" in options else set()
    )
    checked = list(resources.values())
    if "hpa" in options:
        component = objects["components/queue-depth/kustomization.yaml"]
        assert component["kind"] == "Component"
        (patch,) = component["patches"]
        checked.append(objects[f"components/queue-depth/{patch['path']}"])  # the HPA with the queue metric
    for obj in checked:
        if obj["kind"] in CRDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, K8S, strict=True)
        else:
            kubernetes_validate.validate(obj, K8S, strict=True)  # raises ValidationError naming the field
    deployment = resources["deployment.yaml"]
    assert ("replicas" in deployment["spec"]) == ("hpa" not in options)  # the HPA owns the count when present
    gpus = _container(objects)["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == ("1" if options.get("gpu") else None)
    with pytest.raises(InvalidInputError, match="not a Kubernetes name"):  # names the API server would refuse
        _render(registry_home, tmp_path / "bad", name="Lepton_Kit", **options)


def test_ports_and_names_agree_across_the_manifests(registry_home, tmp_path) -> None:
    objects = _render(registry_home, tmp_path, hpa=(1, 3))
    server = _container(objects)
    (port,) = server["ports"]
    args = server["args"]
    assert args[args.index("--port") + 1] == str(port["containerPort"]) and args[1] == f"{kubernetes.MODELS}/tiny"
    (service_port,) = objects["service.yaml"]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert objects["servicemonitor.yaml"]["spec"]["endpoints"][0]["port"] == service_port["name"]
    assert objects["networkpolicy.yaml"]["spec"]["ingress"][0]["ports"][0]["port"] == port["containerPort"]
    selector = objects["deployment.yaml"]["spec"]["selector"]["matchLabels"]
    for name in ("service.yaml", "networkpolicy.yaml"):
        spec = objects[name]["spec"]
        assert (spec.get("selector") or spec["podSelector"]["matchLabels"]) == selector
    assert objects["pdb.yaml"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == objects["deployment.yaml"]["metadata"]["name"]
    # the queue-depth example scales on the gauge the engines set, through the adapter rule rendered beside it
    from leptonkit.monitor.metrics import WAITING

    queue = objects["components/queue-depth/hpa-queue-depth.yaml"]["spec"]["metrics"][1]["pods"]["metric"]["name"]
    rule = objects[kubernetes.ADAPTER_RULES]["rules"]["custom"][0]
    assert queue == rule["name"]["as"] == WAITING._name and rule["seriesQuery"].startswith(WAITING._name + "{")
    pod = objects["deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == kubernetes.USER_ID
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert objects["deployment.yaml"]["spec"]["template"]["metadata"]["annotations"]["leptonkit.dev/models"] == "tiny:1"


def test_a_server_run_with_the_rendered_arguments_answers_its_probes_and_drains_within_the_grace_period(
    registry_home, tmp_path
) -> None:
    from leptonkit.registry import Registry

    one_cpu = {"cpu": "1", "memory": "1Gi"}  # --threads 1: this test shares 2 cores with others
    objects = _render(
        registry_home, tmp_path / "k8s", grace_period=10, resources={"requests": one_cpu, "limits": one_cpu}
    )
    server, init = _container(objects), _container(objects, "api-keys")
    pod = objects["deployment.yaml"]["spec"]["template"]["spec"]
    # the image: models exported to /models/NAME; the pod: an empty home, the key Secret copied by the init container
    image_root, pod_home, secret = tmp_path / "image", tmp_path / "pod-home", tmp_path / "secret"
    Registry(registry_home).export("tiny@prod", image_root / "models" / "tiny")
    made = subprocess.run([*LEPTONKIT, "keys", "create", "--name", "client", "--json"], capture_output=True, text=True,
                          env=os.environ | {"LEPTONKIT_HOME": str(secret)}, check=True)  # fmt: skip
    key = json.loads(made.stdout)["key"]
    pod_home.mkdir()
    mapping = {
        kubernetes.KEYS_MOUNT: str(secret),
        kubernetes.HOME: str(pod_home),
        kubernetes.MODELS: str(image_root / "models"),
    }

    def local(arg: str) -> str:
        return next((arg.replace(k, v, 1) for k, v in mapping.items() if arg.startswith(k)), arg)

    subprocess.run([local(a) for a in init["command"]], check=True)
    args = [local(a) for a in server["args"]]
    args[args.index("--host") + 1] = "127.0.0.1"  # the only change: no container network here (auth stays on)
    args[args.index("--port") + 1] = "{port}"
    env = {e["name"]: local(e["value"]) for e in server["env"]} | {"HOME": str(tmp_path)}
    probes = {kind: server[f"{kind}Probe"]["httpGet"]["path"] for kind in ("startup", "readiness", "liveness")}
    assert probes == {"startup": "/health", "readiness": "/ready", "liveness": "/health"}
    started = time.monotonic()
    with run_server([*LEPTONKIT[1:], *args], tmp_path / "server.log", env=env) as running:  # waits for /health
        loading = time.monotonic() - started
        startup = server["startupProbe"]
        assert loading < startup["periodSeconds"] * startup["failureThreshold"]
        assert httpx.get(running.url + probes["liveness"]).json() == {"status": "ok"}
        ready = httpx.get(running.url + probes["readiness"])
        assert ready.status_code == 200 and ready.json()["models"] == ["tiny"]  # probes need no key
        assert httpx.get(running.url + "/v1/models").status_code == 401  # auth is on ...
        assert (
            httpx.get(running.url + "/v1/models", headers=bearer(key)).status_code == 200
        )  # ... with the Secret's keys
        check = healthcheck_command(DOCKER / "cpu.Dockerfile")
        port = running.url.rsplit(":", 1)[1]
        check[-1] = check[-1].replace(f":{kubernetes.PORT}/", f":{port}/")
        assert subprocess.run(check).returncode == 0  # the image's HEALTHCHECK passes

        # SIGTERM with requests in flight: they finish, new connections are refused, the process exits 0
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 100, "n": 8, "stream": True, "ignore_eos": True}
        finishes: list[str] = []
        first_token = threading.Event()
        done_at: list[float] = []

        def stream() -> None:
            with httpx.stream("POST", running.url + "/v1/completions", json=body, headers=bearer(key), timeout=60) as r:
                for line in r.iter_lines():
                    event = sse_event(line)
                    first_token.set()
                    if isinstance(event, dict) and event["choices"][0]["finish_reason"]:
                        finishes.append(event["choices"][0]["finish_reason"])
            done_at.append(time.monotonic())

        client = threading.Thread(target=stream)
        client.start()
        assert first_token.wait(30)
        running.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # no longer listening: readiness fails, no new requests land here
            httpx.get(running.url + probes["readiness"], timeout=2)
        client.join(60)
        assert finishes == ["length"] * 8  # every choice of the in-flight request finished
        assert running.process.wait(60) == 0
        exited = time.monotonic()
    drain, unload = done_at[0] - signalled, exited - done_at[0]
    grace = float(args[args.index("--grace-period") + 1])
    prestop = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert drain < grace and unload < kubernetes.UNLOAD_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= prestop + grace + unload
    assert subprocess.run(check, capture_output=True).returncode != 0  # and the HEALTHCHECK fails once it is gone


def test_cli_renders_and_refuses_bad_input_in_one_line(cli, registry, tiny_generator, tmp_path) -> None:  # noqa: F811
    registry.register(str(tiny_generator), name="tiny", task="generation")
    done = cli("deploy", "k8s", "tiny", "--out", str(tmp_path / "k8s"))
    assert (done.returncode, done.stderr.count("\n")) == (2, 1) and "--image" in done.stderr
    done = cli("deploy", "k8s", "nosuch", "--image", "x", "--out", str(tmp_path / "k8s"))
    assert (done.returncode, done.stderr.count("\n")) == (2, 1) and "nosuch" in done.stderr
    done = cli("deploy", "k8s", "tiny", "--image", "x", "--out", str(tmp_path / "k8s"), "--hpa", "3:2")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1) and "--hpa" in done.stderr
    assert not (tmp_path / "k8s").exists()  # nothing written on bad input
    done = cli("deploy", "k8s", "tiny", "--image", "x", "--out", str(tmp_path / "k8s"), "--hpa", "2:4", "--cpu", "4")
    assert done.returncode == 0, done.stderr
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["resources"]["limits"]["cpu"] == "4" and server["args"][-2:] == ["--threads", "4"]
