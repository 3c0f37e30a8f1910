"""The Ray cluster under ``leptonkit deploy``: a local single-node cluster started for a ``LEPTONKIT_HOME`` (``ray
start --head`` in a session of its own, token authentication, Ray Serve's high-throughput mode), found again by later
processes through its record under that home, and this process's connection to it or to a cluster at an address.
``deploy/ray_serve.py`` runs the apps on it."""

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
from leptonkit.errors import InvalidInputError, NotFoundError
from leptonkit.serve.http import free_port


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
# Ray's HTTP servers leave watching for a client's disconnect to the app, which does it already (``ray_ingress``):
# with it, streamed chat met the 0.9x target in 4 of 5 short runs and 2 of 3 long ones, against 0 of 6 before
# (benchmarks/results/ray_overhead.json).
# HAProxy's per-request Serve metrics are off: HAProxy writes a log line per request that Ray's HAProxyManager actor
# parses in Python (0.16 ms of CPU per /v1/classify request on this machine, about 3% of all the CPU a request costs
# end to end, client included; dev measurement) to count what each replica's own Prometheus endpoint counts already
# (``ray_replica``), which the Grafana dashboard and alerts read. With it and Serve's access log off (``ray_serve``),
# both overhead targets held in 3 of 3 long runs (ray_overhead.json, 01:45 to 02:02 on 2026-12-07).
HIGH_THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
    "RAY_SERVE_HAPROXY_NBTHREAD": str(min(4, _usable_cpus())),
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "leptonkit.deploy.ray_ingress:ingress_middlewares",
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
}
CLUSTER_FILE = Path("deploy") / "ray-cluster.json"
START_TIMEOUT_S = 120.0


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
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


def _haproxy_files(temp_dir: Path) -> dict[str, str]:
    """HAProxy's config, sockets and server state in the cluster's temp dir, which ``stop`` removes (Ray's default,
    ``/tmp/haproxy-serve/<node id>/``, outlives every cluster). HAProxy binds a Unix socket as ``PATH.<pid>.tmp``
    first: ``/tmp/lkray-UID-PORT/hap/<56-hex node id>/admin.sock`` plus that suffix stays within the 107 bytes."""
    folder = temp_dir / "hap"
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
    }


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
    serve_env = HIGH_THROUGHPUT_ENV | haproxy_ports | _haproxy_files(temp_dir)
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


def local_cluster(home: Path) -> dict[str, Any] | None:
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

    path = resolve_home(home)
    record = local_cluster(path)
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
        record = local_cluster(home)
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
        record = local_cluster(home)
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
