"""The console's HTML pages: registry, runs, data, playground, operations, API keys and the audit log.

Pages are plain functions, which FastAPI runs in its thread pool: reading the registry and run logs never blocks
the event loop that (under ``serve --console``) also serves the API.

Reads are open to any logged-in key; the admin actions (move an alias, verify a version, create or revoke a key)
need an admin key, are POSTs with the session's CSRF token, and are written to the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from leptonkit.console import lineage
from leptonkit.console.charts import Series, line_chart
from leptonkit.console.sessions import Session
from leptonkit.console.web import Refused, admin_of, base, console_of, form_of, render, session_of
from leptonkit.data.manifest import MANIFEST
from leptonkit.errors import LeptonkitError
from leptonkit.train.history import MetricLog, Run, find_runs, get_run

router = APIRouter()
AUDIT_LINES = 200


@router.get("/")
def home(request: Request):
    session_of(request)
    return RedirectResponse(f"{base(request)}/registry", status_code=303)


# ---------------------------------------------------------------------------------------------- registry
def _size(version: Any) -> int:
    return sum(record.get("size", 0) for record in version.files)


def _headline_metrics(metrics: dict[str, Any], limit: int = 3) -> list[tuple[str, float]]:
    """The first few numbers of a version's test (else validation) metrics, for the list."""
    for section in ("test", "valid"):
        values = metrics.get(section)
        if isinstance(values, dict):
            numbers = [(k, v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)]
            if numbers:
                return numbers[:limit]
    return []


def _quick_check(version: Any) -> list[str]:
    """Damage visible without hashing: missing files and sizes that differ from the record (verify hashes)."""
    problems = []
    if not version.path.is_dir():
        return [f"artifact folder {version.path.name} is missing"]
    for record in version.files:
        path = version.path / record["path"]
        if not path.is_file():
            problems.append(f"{record['path']}: missing")
        elif path.stat().st_size != record.get("size"):
            problems.append(f"{record['path']}: size {path.stat().st_size} != recorded {record.get('size')}")
    return problems


@router.get("/registry")
def registry_page(request: Request):
    session = session_of(request)
    versions = console_of(request).registry.list()
    rows = [
        {"v": v, "size": _size(v), "metrics": _headline_metrics(v.metrics), "missing": not v.path.is_dir()}
        for v in versions
    ]
    return render(request, "registry.html", session=session, rows=rows, names=sorted({v.name for v in versions}))


@router.get("/registry/{name}")
def model_page(request: Request, name: str):
    session = session_of(request)
    console = console_of(request)
    everything = console.registry.list()
    versions = sorted((v for v in everything if v.name == name), key=lambda v: -v.version)
    if not versions:
        raise Refused(404, f"no model named {name!r} in the registry")
    runs = {str(run.path): run.id for run in find_runs(console.registry)}
    graph = lineage.build(everything, name, base=base(request), run_ids=runs)
    aliases = sorted({a for v in versions for a in v.aliases})
    entries = [
        {
            "v": v,
            "size": _size(v),
            "problems": _quick_check(v),
            "run": runs.get(str(Path(v.lineage["run_dir"]).expanduser())) if v.lineage.get("run_dir") else None,
        }
        for v in versions
    ]
    return render(
        request, "model.html", session=session, name=name, entries=entries, aliases=aliases, graph=lineage.svg(graph)
    )


@router.post("/registry/{name}/alias")
async def move_alias(request: Request, name: str):
    session = admin_of(request)
    fields = await form_of(request, session)
    return await run_in_threadpool(_move_alias, request, session, name, fields)


def _move_alias(request: Request, session: Session, name: str, fields: dict[str, str]):
    console = console_of(request)
    alias, version = fields.get("alias", "").strip(), fields.get("version", "").strip()
    if not alias or not version.isdigit():
        raise Refused(400, "give an alias name and pick a version")
    target = console.registry.get(f"{name}:{version}")
    current = next((v.version for v in console.registry.list(name) if alias in v.aliases), None)
    if fields.get("confirm") != "yes":
        return render(
            request, "confirm_alias.html", session=session, name=name, alias=alias, target=target, current=current
        )
    moved = console.registry.alias(target.ref, alias)
    console.audit.write(
        "admin_action",
        source="console",
        key=session.name,
        action="move_alias",
        model=name,
        alias=alias,
        from_version=current,
        to_version=moved.version,
    )
    session.flash.append(
        f"{name}@{alias} now points at version {moved.version}" + (f" (was {current})" if current is not None else "")
    )
    return RedirectResponse(f"{base(request)}/registry/{name}", status_code=303)


@router.post("/registry/{name}/{version}/verify")
async def verify(request: Request, name: str, version: int):
    session = admin_of(request)
    await form_of(request, session)
    console = console_of(request)
    damaged = await run_in_threadpool(console.registry.verify, f"{name}:{version}")  # hashes every file
    console.audit.write(
        "admin_action",
        source="console",
        key=session.name,
        action="verify",
        ref=f"{name}:{version}",
        damaged=len(damaged),
    )
    if damaged:
        session.flash.append(f"{name}:{version} is damaged: " + "; ".join(damaged))
    else:
        session.flash.append(f"{name}:{version} verified: every file matches its recorded sha256")
    return RedirectResponse(f"{base(request)}/registry/{name}#v{version}", status_code=303)


@router.get("/audit")
def audit_page(request: Request):
    session = admin_of(request)
    path = console_of(request).audit.path
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-AUDIT_LINES:] if path.is_file() else []
    events = []
    for line in reversed(lines):
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "unreadable line", "text": line[:200]})
    return render(request, "audit.html", session=session, events=events, path=path)


# ---------------------------------------------------------------------------------------------- runs
@router.get("/runs")
def runs_page(request: Request):
    session = session_of(request)
    return render(request, "runs.html", session=session, runs=find_runs(console_of(request).registry))


def _charts(runs: list[Run], logs: list[MetricLog]) -> list[Any]:
    """Training loss and learning rate, then every validation metric, one chart each, a series per run."""
    keys = [("train", "loss"), ("train", "lr")]
    for log in logs:
        keys += [("valid", key) for key in log.keys("valid") if ("valid", key) not in keys]
    charts = []
    for split, key in keys:
        series = [Series(run.id, log.series(split, key)) for run, log in zip(runs, logs, strict=True)]
        if any(s.points for s in series) or key == "loss":
            title = f"{'training' if split == 'train' else 'validation'} {key}"
            charts.append(line_chart(series, title=title, y_label=key, chart_id=f"chart-{split}-{key}"))
    return charts


@router.get("/runs/compare")
def compare_page(request: Request, run: list[str] = Query(default=[])):
    session = session_of(request)
    if len(run) < 2:
        raise Refused(400, "tick two or more runs to compare them")
    registry = console_of(request).registry
    runs = [get_run(registry, run_id) for run_id in run]
    logs = [r.metric_log() for r in runs]
    return render(request, "compare.html", session=session, runs=runs, logs=logs, charts=_charts(runs, logs))


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str):
    session = session_of(request)
    run = get_run(console_of(request).registry, run_id)
    log = run.metric_log()
    return render(request, "run.html", session=session, run=run, log=log, charts=_charts([run], [log]))


# ---------------------------------------------------------------------------------------------- data
def _manifests(versions: list[Any], folders: list[Path]) -> list[dict[str, Any]]:
    """The prepared datasets the registry's lineage names, and those in ``folders`` (a dataset, or a folder of
    them: ``leptonkit console --data DIR``), each with its manifest or why it cannot be read."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for candidate in [folder, *(sorted(folder.iterdir()) if folder.is_dir() else [])]:
            if (candidate / MANIFEST).is_file():
                found.setdefault(str(candidate), {"path": str(candidate), "versions": [], "pinned": set()})
    for version in versions:
        data = version.lineage.get("data")
        if not (isinstance(data, dict) and isinstance(data.get("path"), str)):
            continue
        entry = found.setdefault(data["path"], {"path": data["path"], "versions": [], "pinned": set()})
        entry["versions"].append(version.ref)
        entry["pinned"].add(data.get("content_hash"))
    for path, entry in found.items():
        entry["anchor"] = lineage.data_anchor(path)
        try:
            entry["manifest"] = json.loads((Path(path) / MANIFEST).read_text())
        except FileNotFoundError:
            entry["problem"] = f"{MANIFEST} is missing (the dataset folder was moved or deleted)"
        except (ValueError, OSError) as err:
            entry["problem"] = f"{MANIFEST} cannot be read: {err}"
        else:
            entry["changed"] = bool(entry["versions"]) and entry["manifest"].get("content_hash") not in entry["pinned"]
    return sorted(found.values(), key=lambda e: e["path"])


@router.get("/data")
def data_page(request: Request):
    session = session_of(request)
    console = console_of(request)
    datasets = _manifests(console.registry.list(), console.settings.data_dirs)
    return render(request, "data.html", session=session, datasets=datasets)


# ---------------------------------------------------------------------------------------------- playground, operations
@router.get("/playground")
def playground_page(request: Request):
    session = session_of(request)
    return render(request, "playground.html", session=session, server=console_of(request).server_url(request))


@router.get("/operations")
def operations_page(request: Request):
    session = session_of(request)
    console = console_of(request)
    return render(
        request,
        "operations.html",
        session=session,
        server=console.server_url(request),
        rules=console.rules,
        rules_problem=console.rules_problem,
    )


# ---------------------------------------------------------------------------------------------- API keys
@router.get("/keys")
def keys_page(request: Request):
    session = admin_of(request)
    keys = console_of(request).keys.list(include_revoked=True)
    return render(request, "keys.html", session=session, keys=keys)


@router.post("/keys/create")
async def create_key(request: Request):
    session = admin_of(request)
    fields = await form_of(request, session)
    console = console_of(request)
    try:
        record, key = console.keys.create(fields.get("name", "").strip(), fields.get("scope", "inference"))
    except LeptonkitError as err:
        session.flash.append(f"no key created: {err}")
        return RedirectResponse(f"{base(request)}/keys", status_code=303)
    console.audit.write("key_created", source="console", key=session.name, name=record.name, scope=record.scope)
    keys = console.keys.list(include_revoked=True)
    return render(request, "keys.html", session=session, keys=keys, created=record, secret=key)


@router.post("/keys/revoke")
async def revoke_key(request: Request):
    session = admin_of(request)
    fields = await form_of(request, session)
    console = console_of(request)
    name = fields.get("name", "")
    if fields.get("confirm") != "yes":
        raise Refused(400, f"tick the box to confirm revoking {name!r}")
    console.keys.revoke(name)
    console.audit.write("key_revoked", source="console", key=session.name, name=name)
    session.flash.append(f"key {name!r} revoked: it is refused from the next request on")
    return RedirectResponse(f"{base(request)}/keys", status_code=303)
