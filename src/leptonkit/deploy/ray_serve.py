"""Serve leptonkit's app as Ray Serve replicas: the same FastAPI app, routes, keys, limits, metrics and safety.

Python API (what ``leptonkit deploy ray|status|update|stop`` call)::

    from leptonkit.deploy import ray_serve
    info = ray_serve.deploy(ServeConfig(models=["sentiment@prod"], port=8000), name="sentiment", replicas=2)
    ray_serve.status()                  # [{"name", "status", "models", "replicas": [{"id", "state", "pid", ...}]}]
    ray_serve.update("sentiment")       # re-resolve aliases; rolling replacement, one replica at a time
    ray_serve.stop("sentiment")         # delete the app (and the local cluster leptonkit started, once unused)

Each takes ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) and ``home`` (LEPTONKIT_HOME). Without an
address, ``deploy`` starts a local single-node cluster (``ray start --head`` in a session of its own, node address
127.0.0.1, usage stats off, Ray's token authentication on with a fresh token in ``LEPTONKIT_HOME/deploy/ray-token``)
and records it in ``LEPTONKIT_HOME/deploy/ray-cluster.json``, so the CLI can exit while
the cluster runs on and later ``status``/``update``/``stop`` calls find it; ``stop`` of its last app ends every
process of that session. A session rather than ``ray.init()``: a cluster ``ray.init`` starts dies with the process
that started it. Ray itself replaces a loopback node address with the machine's address for its internal ports (its
``resolve_ip_for_localhost``); the ports clients use, HAProxy's and the replicas' (see :data:`HIGH_THROUGHPUT_ENV`),
bind ``config.host`` (127.0.0.1 unless told otherwise).

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
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from leptonkit.config import home as default_home
from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.http import free_port

DEPLOYMENT = "leptonkit"


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one: Linux; else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Ray Serve's high-throughput mode (Ray >= 2.56): HAProxy as the ingress, forwarding to each replica's own HTTP
# server (direct ingress) instead of through the Python proxy actor. On this 2-core machine it took one replica from
# 0.34x to 0.953x the direct server on /v1/classify and from 0.53x to 0.896x on streamed chat
# (benchmarks/results/ray_overhead.json, newest run of each mode). Set for the local cluster ``deploy`` starts; a
# cluster at ``--address`` needs them in its own environment. Exporting either as 0 before ``deploy`` turns it off.
# A stopping replica stays reachable for a deregistration window before it closes its listener (HAProxy retries
# refused connections on another replica): 30 s by default, sized for external load balancers; the local cluster's
# HAProxy runs on the same node and reloads within a second, so 3 s. HAProxy also serves its Prometheus metrics and a
# stats page on fixed ports (9101 and 8404, all interfaces), which two clusters on one machine would both bind: each
# local cluster gets free ports for them.
# HAProxy runs 4 threads by default in Ray; on a node with fewer CPUs they only take turns on them (HAProxy's own
# default is one thread per CPU it may run on), so the local cluster gives it at most one per CPU.
HIGH_THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
    "RAY_SERVE_HAPROXY_NBTHREAD": str(min(4, _usable_cpus())),
}
CLUSTER_FILE = Path("deploy") / "ray-cluster.json"
START_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------------- cluster


def _home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).expanduser().resolve() if home else default_home().expanduser().resolve()


def _check_reachable(address: str) -> None:
    """Fail in one line when ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts no TCP connection within 3 s."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise InvalidInputError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
    except OSError as err:
        raise InvalidInputError(
            f"no Ray cluster answers at {address}: {err.strerror or err}",
            hint="start one with `ray start --head`, or leave --address out to start a local one",
        ) from None


def start_local_cluster(home: Path) -> dict[str, Any]:
    """``ray start --head`` in a new session on 127.0.0.1, with token authentication (a fresh token in
    ``home/deploy/ray-token``, mode 0600); its record (address, session id, token file), saved under ``home``."""
    port = _cluster_port()
    temp_dir = Path("/tmp") / f"lkray-{os.getuid()}-{port}"  # short: Ray's socket paths must fit 107 bytes
    folder = home / CLUSTER_FILE.parent
    folder.mkdir(parents=True, exist_ok=True)
    token = folder / "ray-token"
    token.touch(mode=0o600)
    token.write_text(_process_token.get("token") or secrets.token_hex(32))
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={_cluster_port()}",
        f"--dashboard-agent-listen-port={_cluster_port()}",
    ]
    log = folder / "ray-start.log"
    haproxy_ports = {f"RAY_SERVE_HAPROXY_{kind}_PORT": str(_cluster_port()) for kind in ("METRICS", "STATS")}
    serve_env = HIGH_THROUGHPUT_ENV | haproxy_ports
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=serve_env | os.environ | _auth_env(token),
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (temp_dir / "ray_current_cluster").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            _kill_session(process.pid)
            raise InvalidInputError(f"the local Ray cluster did not start; see {log}")
        time.sleep(0.2)
    address = (temp_dir / "ray_current_cluster").read_text().strip()
    record = {"address": address, "session": process.pid, "temp_dir": str(temp_dir), "token": str(token)}
    (home / CLUSTER_FILE).write_text(json.dumps(record))
    return record


def _cluster_port() -> int:
    """A free port below the kernel's ephemeral range, for the ports the local cluster is told to use. Ray's processes
    bind ephemeral ports of their own while the cluster starts; one of them taking a port reserved with
    ``free_port()`` (itself ephemeral) failed a start."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768  # Linux's default
    for _ in range(200):
        port = secrets.choice(range(max(1024, ephemeral_low - 12000), ephemeral_low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def _auth_env(token: Path) -> dict[str, str]:
    """Ray's token authentication with the token in ``token``: every client of the local cluster sends it."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def _use_token(token: Path) -> None:
    """Authenticate this process's Ray client with ``token``: Ray reads its auth settings into its config when it
    is imported, so the config is re-read after the environment changes (as Ray's own ``_enable_token_auth``)."""
    from ray._raylet import Config

    os.environ.update(_auth_env(token))
    Config.initialize("")
    _process_token.setdefault("token", token.read_text())


# Ray's client keeps the first token it reads for the life of the process: a later cluster this process starts
# (a second deployment from one notebook or test session) is given the same token, or this process cannot join it.
_process_token: dict[str, str] = {}


def session_members(sid: int) -> list[int]:
    """The processes of session ``sid`` (read from ``/proc``). The local cluster is a session of its own, and its
    session rather than its process group is what must end: Ray's workers move into process groups of their own, and
    HAProxy, a child of one, outlives the worker that started it."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            members.append(int(entry.name))
    return members


def _kill_session(sid: int, wait_s: float = 3.0) -> None:
    """SIGTERM every process of session ``sid``, then SIGKILL whatever is left after ``wait_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)


def _local_cluster(home: Path) -> dict[str, Any] | None:
    """The local cluster leptonkit started for ``home`` while its session has processes, else ``None``."""
    path = home / CLUSTER_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if not session_members(record["session"]):
        path.unlink(missing_ok=True)
        return None
    return record


def stop_local_cluster(home: str | os.PathLike[str] | None = None) -> bool:
    """End the local cluster leptonkit started for ``home`` (``False`` when there is none)."""
    import shutil

    path = _home(home)
    record = _local_cluster(path)
    if record is None:
        return False
    disconnect()
    _kill_session(record["session"])
    (path / CLUSTER_FILE).unlink(missing_ok=True)
    shutil.rmtree(record["temp_dir"], ignore_errors=True)
    return True


_connected: dict[str, str] = {}  # the address this process's Ray client is connected to


def disconnect() -> None:
    """Leave the cluster this process is connected to. A Ray driver whose cluster stops under it exits the process
    (code 1) once its reconnection times out, so a process that goes on after a cluster it used is stopped elsewhere
    (by ``leptonkit deploy stop`` in another process) must disconnect first."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _connected.clear()


def connect(address: str | None, home: Path, *, start: bool = False) -> bool:
    """``ray.init`` to ``address``, else to the local cluster recorded under ``home`` (started when ``start``).
    ``True`` when this call started the cluster (stopped again if the connection then fails)."""
    import ray

    started = False
    if address is None:
        record = _local_cluster(home)
        if record is None:
            if not start:
                raise NotFoundError(
                    "no local Ray cluster started by leptonkit for this LEPTONKIT_HOME",
                    hint="pass --address of your cluster, or deploy one with `leptonkit deploy ray`",
                )
            record, started = start_local_cluster(home), True
        address = record["address"]
        _use_token(Path(record["token"]))
    elif address != "auto":
        _check_reachable(address)
        record = _local_cluster(home)
        if record is not None and record["address"] == address:  # leptonkit's own cluster, named explicitly
            _use_token(Path(record["token"]))
    if ray.is_initialized() and _connected.get("address") == address:
        return started
    try:
        if ray.is_initialized():
            ray.shutdown()
        ray.init(address=address, namespace="leptonkit", logging_level="ERROR", log_to_driver=False)
        _connected["address"] = address
    except BaseException as err:
        if started:
            stop_local_cluster(home)
        if isinstance(err, ConnectionError):
            raise InvalidInputError(f"cannot connect to Ray at {address}: {err}", hint="check --address") from None
        raise
    return started


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
        raise RuntimeError("not connected to a Ray cluster: call connect() (or status/update/stop) first")
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
    home = _home(config.home)
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
    started = connect(address, home, start=True)
    try:
        _check_resources(config, num_cpus, num_gpus, autoscale[0] if autoscale else replicas)
        _start(name, spec, config)
    except BaseException:
        if started:
            stop_local_cluster(home)
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

    connect(address, _home(home))
    state = _state(name)
    spec = ray.get(state.get_spec.remote())
    config = ServeConfig.model_validate(spec["config"])
    pinned = _pin(config, Path(config.home or _home(home)))
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
    path = _home(home)
    connect(address, path)
    _state(name)
    _remove(name)
    if address is None and not keep_cluster and not _app_names():
        return stop_local_cluster(path)
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
    path = _home(home)
    if address is None and _local_cluster(path) is None:
        return []
    connect(address, path)
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
