"""``leptonkit console``: the web console on a server of its own (``leptonkit.console``)."""

from __future__ import annotations

from pathlib import Path

import typer


def console(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    server: str | None = typer.Option(
        None, "--server", help="A running `leptonkit serve` (URL) for the playground and operations pages."
    ),
    alerts: Path | None = typer.Option(
        None, "--alerts", help="Prometheus alert rules to judge (default: deploy/prometheus/alerts.yml)."
    ),
    data: list[Path] = typer.Option([], "--data", help="A prepared dataset, or a folder of them, to list; repeatable."),
    audit_log: Path | None = typer.Option(None, "--audit-log", help="Default: LEPTONKIT_HOME/audit.log."),
    session_minutes: float = typer.Option(30.0, "--session-minutes", min=1, help="Idle minutes before a log-out."),
    ssl_certfile: str | None = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
    ssl_keyfile: str | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
) -> None:
    """Registry, runs, data, playground, operations and API keys in a browser, at http://HOST:PORT/console."""
    import uvicorn

    from leptonkit.config import home
    from leptonkit.console.app import standalone
    from leptonkit.console.web import ConsoleSettings
    from leptonkit.serve.authentication import auth_required

    settings = ConsoleSettings(
        home=home(),
        server_url=server,
        audit_log=audit_log,
        alerts=alerts,
        data_dirs=data,
        session_idle=session_minutes * 60,
        secure_cookie=ssl_certfile is not None,
    )
    scheme = "https" if ssl_certfile else "http"
    if not ssl_certfile and auth_required(None, host):  # bound beyond loopback
        typer.echo(
            "warning: without --ssl-certfile the keys typed into the log-in page cross the network unencrypted",
            err=True,
        )
    typer.echo(f"console on {scheme}://{host}:{port}/console", err=True)
    uvicorn.run(
        standalone(settings),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
