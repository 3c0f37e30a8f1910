"""Serve leptonkit's app as Ray Serve replicas: the same FastAPI app, routes, keys, limits, metrics and safety.

Python API (what ``leptonkit deploy ray|status|update|stop`` call)::

    from leptonkit.deploy import ray_serve
    info = ray_serve.deploy(ServeConfig(models=["sentiment@prod"], port=8000), name="sentiment", replicas=2)
    ray_serve.status()                  # [{"name", "status", "models", "replicas": [{"id", "state", "pid", ...}]}]
    ray_serve.update("sentiment")       # re-resolve aliases; rolling replacement, one replica at a time
    ray_serve.stop("sentiment")         # delete the app (and the local cluster leptonkit started, once unused)

Each takes ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) and ``home`` (LEPTONKIT_HOME). Without an
address, ``deploy`` starts a local single-node cluster (``deploy/ray_cluster.py``: ``ray start --head`` in a session
of its own, node address 127.0.0.1, usage stats off, Ray's token authentication on with a fresh token in
``LEPTONKIT_HOME/deploy/ray-token``) and records it in ``LEPTONKIT_HOME/deploy/ray-cluster.json``, so the CLI can exit
while the cluster runs on and later ``status``/``update``/``stop`` calls find it; ``stop`` of its last app ends every
process of that session. A session rather than ``ray.init()``: a cluster ``ray.init`` starts dies with the process
that started it. Ray itself replaces a loopback node address with the machine's address for its internal ports (its
``resolve_ip_for_localhost``); the ports clients use, HAProxy's and the replicas' (see
``ray_cluster.HIGH_THROUGHPUT_ENV``), bind ``config.host`` (127.0.0.1 unless told otherwise).

How the pieces map onto Ray:

- **Replicas**: one Ray Serve deployment per app running :class:`~leptonkit.deploy.ray_replica.LeptonkitReplica`,
  each replica with its own engines (``deploy/ray_replica.py``). ``replicas=N`` is a fixed count;
  ``autoscale=(MIN, MAX)`` is Serve's autoscaler on ``target_ongoing_requests`` per replica.
- **Rolling updates**: the spec (refs as typed, options) lives in the app's state actor; ``update`` re-pins every
  ref (``sentiment@prod`` -> ``sentiment:3``) and redeploys when a pin moved. Serve replaces the replicas with
  ``max_surge_percent`` set so that one new replica starts and becomes ready before one old replica is stopped (the
  old one drains its requests within ``config.grace_period``): capacity never drops below the target and no request
  fails, at the cost of room for one extra replica during the roll.
- **Rate limits** across replicas: a shared actor (``deploy/ray_state.py``).
- **Metrics**: each replica serves its own ``/metrics`` with a ``replica`` label on an ephemeral port of its node
  (``status`` lists the URLs; Prometheus scrapes them as separate instances, so the shipped dashboard and alerts,
  which group by ``instance``, work unchanged). Chosen over Ray's metrics export because the server's metrics are
  ``prometheus_client`` objects: a per-replica endpoint exports them as they are, while Ray's export would need
  every metric rewritten as a ``ray.util.metrics`` object.
- **Model files on other nodes**: shared storage. The app pins each ref to a version at deploy time and every
  replica opens the registry at ``config.home`` (made absolute here), which must be the same path on every node
  (an NFS/EFS mount of LEPTONKIT_HOME, also where the API-key database lives, so revoking a key reaches every
  replica at once). Before loading, each replica verifies the version's files against their recorded sha256, so a
  node with a stale or partial copy fails its start with the damaged files named instead of serving another model.
- **vLLM with tensor/pipeline parallelism**: a replica gets a placement group of ``tp * pp`` GPU bundles (plus its
  own CPU), packed on one node when pipeline parallelism is 1.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from leptonkit.deploy import ray_cluster
from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.serve.config import ServeConfig

DEPLOYMENT = "leptonkit"


# ------------------------------------------------------------------------------------------------------ apps


def _pin(config: ServeConfig, home: Path) -> list[str]:
    """Every model ref as a pinned version (aliases resolved now); folders and builtins as given. Unknown refs
    raise ``NotFoundError`` before anything starts."""
    from leptonkit.registry import Registry

    registry = Registry(home)
    for ref in config.adapters.values():
        registry.get(ref)
    return [
        ref if ref.startswith("builtin:") or Path(ref).expanduser().is_dir() else registry.get(ref).ref
        for ref in config.models
    ]


def parallel_gpus(config: ServeConfig) -> int:
    """GPUs one vLLM replica spans: tensor x pipeline parallel size (1 for any other engine)."""
    if config.engine != "vllm":
        return 1
    return config.tensor_parallel_size * config.pipeline_parallel_size


def deployment_options(config: ServeConfig, options: dict[str, Any]) -> dict[str, Any]:
    """``serve.deployment(cls, **options)`` for ``options`` (the scaling and resource settings of :func:`deploy`)."""
    num_cpus, num_gpus = options["num_cpus"], options["num_gpus"]
    result: dict[str, Any] = {
        "name": DEPLOYMENT,
        "max_ongoing_requests": max(config.max_num_seqs, config.encoder_max_batch),
        "graceful_shutdown_timeout_s": config.grace_period,
        "graceful_shutdown_wait_loop_s": 0.5,
        "health_check_period_s": 2.0,
        "rolling_update_percentage": 0.01,  # with the surge below: one replica at a time
        # the app writes one structured access line per request itself, as ``serve`` turns uvicorn's off
        "logging_config": {"enable_access_log": False},
    }
    world = parallel_gpus(config)
    if world > 1:
        result["placement_group_bundles"] = [{"CPU": num_cpus, "GPU": 1}] + [{"GPU": 1}] * (world - 1)
        result["placement_group_strategy"] = "STRICT_PACK" if config.pipeline_parallel_size == 1 else "PACK"
        result["ray_actor_options"] = {"num_cpus": num_cpus, "num_gpus": 0}
    else:
        result["ray_actor_options"] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if options.get("autoscale"):
        low, high = options["autoscale"]
        result["autoscaling_config"] = {
            "min_replicas": low,
            "initial_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": options["target_ongoing_requests"],
            "upscale_delay_s": options["upscale_delay_s"],
            "downscale_delay_s": options["downscale_delay_s"],
            "look_back_period_s": min(options["upscale_delay_s"], options["downscale_delay_s"], 30.0) or 1.0,
            "metrics_interval_s": 0.5,
        }
        target = high
    else:
        result["num_replicas"] = options["replicas"]
        target = options["replicas"]
    result["max_surge_percent"] = max(1, 100 // max(target, 1))  # ceil(p * n / 100) == 1: one extra replica
    return result


def _run(name: str, spec: dict[str, Any]) -> None:
    from ray import serve

    from leptonkit.deploy.ray_replica import LeptonkitReplica

    config = ServeConfig.model_validate(spec["config"])
    pinned = config.model_copy(update={"models": spec["pinned"]})
    deployment = serve.deployment(LeptonkitReplica, **deployment_options(config, spec["options"]))
    serve.run(deployment.bind(pinned.model_dump_json(), name), name=name, route_prefix=spec["options"]["route_prefix"])
    _wait_in_rotation(name)


def _wait_in_rotation(name: str, timeout: float = 30.0) -> None:
    """Return once the app's ingress has routed a request to every running replica (or after ``timeout``). Serve marks
    an app RUNNING when its replicas are ready; HAProxy adds them to its backend a moment later (a reload, then health
    checks), and until then every request goes to the replicas it already had. An ingress this machine cannot connect
    to (a remote cluster's, bound to its loopback) is not waited for."""
    import httpx

    from leptonkit.deploy.ray_replica import REPLICA_HEADER

    status = app_status(name)
    wanted = {replica["id"] for replica in status["replicas"] if replica["state"] == "RUNNING"}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while not wanted <= seen and time.monotonic() < deadline:
            try:
                response = client.get(status["url"].rstrip("/") + "/health")
            except httpx.ConnectError:
                return
            except httpx.HTTPError:  # a timeout while replicas load: ask again
                continue
            seen.add(response.headers.get(REPLICA_HEADER.decode(), ""))
            time.sleep(0.05)


def _state(name: str) -> Any:
    import ray

    from leptonkit.deploy.ray_state import NAMESPACE, state_actor_name

    if not ray.is_initialized():  # ray.get_actor would start a throwaway local cluster in this process
        raise RuntimeError("not connected to a Ray cluster: call ray_cluster.connect() (or status/update/stop) first")
    try:
        return ray.get_actor(state_actor_name(name), namespace=NAMESPACE)
    except ValueError:
        hint = "see `leptonkit deploy status`"
        raise NotFoundError(f"no leptonkit app named {name} on this Ray cluster", hint=hint) from None


def deploy(
    config: ServeConfig,
    *,
    name: str = "leptonkit",
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    target_ongoing_requests: float = 2.0,
    upscale_delay_s: float = 30.0,
    downscale_delay_s: float = 600.0,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    address: str | None = None,
    route_prefix: str = "/",
) -> dict[str, Any]:
    """Deploy ``config.models`` as the Ray Serve app ``name``, served at ``http://config.host:config.port``; returns
    :func:`status` of the app once every replica is running. Bad input (unknown ref, unreachable address, GPUs the
    cluster lacks) raises before anything is left running: a local cluster this call started is stopped again."""
    _at_least_one(replicas)
    if autoscale is not None:
        _scale_range(autoscale)
    home = ray_cluster.resolve_home(config.home)
    config = config.model_copy(update={"home": str(home), "threads": config.threads or max(1, int(num_cpus))})
    spec = {
        "config": config.model_dump(mode="json"),
        "pinned": _pin(config, home),
        "options": {
            "replicas": replicas,
            "autoscale": list(autoscale) if autoscale else None,
            "target_ongoing_requests": target_ongoing_requests,
            "upscale_delay_s": upscale_delay_s,
            "downscale_delay_s": downscale_delay_s,
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "route_prefix": route_prefix,
        },
    }
    started = ray_cluster.connect(address, home, start=True)
    try:
        _check_resources(config, num_cpus, num_gpus, autoscale[0] if autoscale else replicas)
        _start(name, spec, config)
    except BaseException:
        if started:
            ray_cluster.stop_local_cluster(home)
        raise
    return app_status(name)


def _check_resources(config: ServeConfig, num_cpus: float, num_gpus: float, replicas: int) -> None:
    import ray

    have = ray.cluster_resources()
    gpus = max(num_gpus, parallel_gpus(config) if config.engine == "vllm" else 0)
    if gpus and have.get("GPU", 0) < gpus * replicas:
        raise InvalidInputError(
            f"{replicas} replica(s) x {gpus:g} GPU(s) asked, the Ray cluster has {have.get('GPU', 0):g} GPU(s)",
            hint="leave --num-gpus out on a machine without GPUs, or join a GPU node to the cluster",
        )
    if have.get("CPU", 0) < num_cpus * replicas:
        raise InvalidInputError(
            f"{replicas} replica(s) x {num_cpus:g} CPU(s) asked, the Ray cluster has {have.get('CPU', 0):g}",
            hint="lower --num-cpus or --replicas",
        )


def _start(name: str, spec: dict[str, Any], config: ServeConfig) -> None:
    import ray
    from ray import serve

    from leptonkit.deploy.ray_state import NAMESPACE, AppState, state_actor_name

    serve.start(http_options={"host": config.host, "port": config.port})
    actor_name = state_actor_name(name)
    try:
        ray.get_actor(actor_name, namespace=NAMESPACE)
        raise ConflictError(f"app {name} is already deployed", hint=f"`leptonkit deploy stop {name}` first")
    except ValueError:
        pass
    state = AppState.options(name=actor_name, namespace=NAMESPACE, lifetime="detached").remote(spec)
    try:
        ray.get(state.get_spec.remote())
        _run(name, spec)
    except BaseException:
        _remove(name)
        raise


def _remove(name: str) -> None:
    import ray
    from ray import serve

    from leptonkit.deploy.ray_state import NAMESPACE, state_actor_name

    if name in serve.status().applications:
        serve.delete(name)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(state_actor_name(name), namespace=NAMESPACE))


def update(
    name: str,
    *,
    address: str | None = None,
    home: str | os.PathLike[str] | None = None,
    replicas: int | None = None,
    autoscale: tuple[int, int] | None = None,
    **scaling: float,
) -> dict[str, Any]:
    """Re-resolve the app's refs (aliases may have moved) and roll the replicas onto the new versions, one at a
    time; ``replicas``, ``autoscale`` and ``scaling`` (``target_ongoing_requests``, ``upscale_delay_s``,
    ``downscale_delay_s``) change the scaling in place, without restarting replicas. Returns
    ``{"name", "changed": {ref: [old pin, new pin]}, "status"}``; nothing is redeployed when nothing changed."""
    import ray

    ray_cluster.connect(address, ray_cluster.resolve_home(home))
    state = _state(name)
    spec = ray.get(state.get_spec.remote())
    config = ServeConfig.model_validate(spec["config"])
    pinned = _pin(config, Path(config.home or ray_cluster.resolve_home(home)))
    moves = zip(config.models, spec["pinned"], pinned, strict=True)
    changed = {ref: [old, new] for ref, old, new in moves if old != new}
    options = dict(spec["options"])
    if replicas is not None:
        options |= {"replicas": _at_least_one(replicas), "autoscale": None}
    if autoscale is not None:
        options["autoscale"] = list(_scale_range(autoscale))
    unknown = set(scaling) - {"target_ongoing_requests", "upscale_delay_s", "downscale_delay_s"}
    if unknown:
        raise InvalidInputError(f"update: unknown scaling option(s) {', '.join(sorted(unknown))}")
    options |= scaling
    if changed or options != spec["options"]:
        spec |= {"pinned": pinned, "options": options}
        _run(name, spec)
        ray.get(state.set_spec.remote(spec))
    return {"name": name, "changed": changed, "status": app_status(name)}


def _at_least_one(replicas: int) -> int:
    if replicas < 1:
        raise InvalidInputError(f"--replicas {replicas}: expected at least 1")
    return replicas


def _scale_range(autoscale: tuple[int, int]) -> tuple[int, int]:
    low, high = autoscale
    if not 1 <= low <= high:
        raise InvalidInputError(f"--autoscale {low}:{high}: expected MIN:MAX with 1 <= MIN <= MAX")
    return low, high


def parse_autoscale(text: str) -> tuple[int, int]:
    """``--autoscale MIN:MAX`` as two integers with 1 <= MIN <= MAX."""
    low, sep, high = text.partition(":")
    if not (sep and low.isdigit() and high.isdigit()):
        raise InvalidInputError(f"--autoscale {text}: expected MIN:MAX", hint="for example --autoscale 1:4")
    return _scale_range((int(low), int(high)))


def stop(
    name: str, *, address: str | None = None, home: str | os.PathLike[str] | None = None, keep_cluster: bool = False
) -> bool:
    """Delete the app; when it was the last leptonkit app on a local cluster leptonkit started, stop that cluster
    too (unless ``keep_cluster``). ``True`` when the cluster was stopped."""
    path = ray_cluster.resolve_home(home)
    ray_cluster.connect(address, path)
    _state(name)
    _remove(name)
    if address is None and not keep_cluster and not _app_names():
        return ray_cluster.stop_local_cluster(path)
    return False


# ---------------------------------------------------------------------------------------------------- status


def _app_names() -> list[str]:
    import ray

    from leptonkit.deploy.ray_state import NAMESPACE, state_actor_name

    prefix = state_actor_name("")
    return sorted(
        actor["name"].removeprefix(prefix)
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == NAMESPACE and actor["name"].startswith(prefix)
    )


def _in_flight(url: str | None) -> int | None:
    """``leptonkit_replica_requests_in_flight`` read from a replica's metrics endpoint (``None`` if unreachable)."""
    import httpx

    if url is None:
        return None
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("leptonkit_replica_requests_in_flight{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def app_status(name: str) -> dict[str, Any]:
    """One app: Serve's status, the pinned models, and each replica's id, state, pid, node, metrics URL and
    requests in flight (after :func:`connect`)."""
    import ray
    from ray.serve.context import _get_global_client

    spec = ray.get(_state(name).get_spec.remote())
    metrics_urls = ray.get(_state(name).metrics_urls.remote())
    details = _get_global_client().get_serve_details()
    app = details.get("applications", {}).get(name, {})
    deployment = app.get("deployments", {}).get(DEPLOYMENT, {})
    replicas = [
        {
            "id": replica["replica_id"],
            "state": replica["state"],
            "pid": replica.get("pid"),
            "node": replica.get("node_ip"),
            "metrics": metrics_urls.get(replica["replica_id"]),
            "in_flight": _in_flight(metrics_urls.get(replica["replica_id"])) if replica["state"] == "RUNNING" else 0,
        }
        for replica in deployment.get("replicas", [])
    ]
    http = details.get("http_options", {})
    return {
        "name": name,
        "status": app.get("status", "NOT_STARTED"),
        "message": app.get("message") or deployment.get("message") or "",
        "url": f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}{spec['options']['route_prefix']}",
        "models": spec["pinned"],
        "refs": spec["config"]["models"],
        "target_replicas": deployment.get("target_num_replicas"),
        "replicas": replicas,
    }


def status(
    name: str | None = None, *, address: str | None = None, home: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """:func:`app_status` of every leptonkit app on the cluster (or of ``name``); ``[]`` when no local cluster."""
    path = ray_cluster.resolve_home(home)
    if address is None and ray_cluster.local_cluster(path) is None:
        return []
    ray_cluster.connect(address, path)
    return [app_status(app) for app in ([name] if name else _app_names())]


def wait_until(name: str, predicate: Any, timeout: float) -> dict[str, Any]:
    """Poll :func:`app_status` until ``predicate(status)`` holds; the last status (raises ``TimeoutError``)."""
    deadline = time.monotonic() + timeout
    while True:
        current = app_status(name)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"app {name} did not reach the state within {timeout:g} s: {current}")
        time.sleep(0.25)
