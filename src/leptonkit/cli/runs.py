"""``leptonkit runs list|show``: training runs, their status, timing and last metrics (``leptonkit.train.history``)."""

from __future__ import annotations

import typer

from leptonkit.cli.output import JSON_OPTION, console, print_json, print_table

app = typer.Typer(help="Training runs: recipe, status, timing, metrics and the version each registered.")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


@app.command("list")
def list_(json_out: bool = JSON_OPTION) -> None:
    """Every run the registry's lineage names or LEPTONKIT_HOME/runs holds, newest first."""
    from leptonkit.registry import Registry
    from leptonkit.train.history import find_runs

    runs = find_runs(Registry())
    if json_out:
        print_json([run.to_dict() for run in runs])
        return
    rows = [[r.id, r.name, r.status, r.started_at, _seconds(r.seconds), r.steps, r.version] for r in runs]
    print_table("training runs", ["run", "name", "status", "started", "time", "steps", "version"], rows)


@app.command("show")
def show(
    run_id: str = typer.Argument(..., help="A run as `runs list` names it."), json_out: bool = JSON_OPTION
) -> None:
    """One run: recipe, status, timing, the last train and validation records, unreadable log lines."""
    from leptonkit.registry import Registry
    from leptonkit.train.history import get_run

    info = get_run(Registry(), run_id).to_dict(detail=True)
    if json_out:
        print_json(info)
        return
    rows = [[key, info[key]] for key in ("name", "status", "started_at", "ended_at", "seconds", "steps", "version")]
    rows += [["path", info["path"]], ["log records", info["log_records"]]]
    for split in ("train", "valid"):
        last = info[f"last_{split}"]
        if last:
            rows.append([f"last {split}", ", ".join(f"{k}={v:.4g}" for k, v in last.items() if _number(v))])
    print_table(f"run {info['id']}", ["field", "value"], rows)
    if info["damaged_lines"]:
        console.print(
            f"[yellow]metrics.jsonl: {len(info['damaged_lines'])} unreadable line(s) skipped: "
            f"{', '.join(map(str, info['damaged_lines'][:10]))}[/yellow]"
        )
    if info["problem"]:
        console.print(f"[yellow]{info['problem']}[/yellow]")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
