"""Run the app under uvicorn: SIGTERM stops accepting, lets in-flight requests finish within the grace period,
unloads the models and exits 0."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from leptonkit.serve.app import create_app
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.http import with_header_timeout


def uvicorn_server(config: ServeConfig, setup: Callable[[FastAPI], None] | None = None) -> uvicorn.Server:
    """The server for ``create_app(config)``; ``setup`` may add to the app first (``serve --console`` mounts the
    web console with it, as the layer above)."""
    app = create_app(config)
    if setup is not None:
        setup(app)
    settings = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,  # the operations middleware writes one structured line per request
        timeout_graceful_shutdown=int(config.grace_period) or None,
        lifespan="on",
        http=with_header_timeout(config.header_timeout),  # slow-header clients are cut off (serve/http.py)
        timeout_keep_alive=config.keep_alive_timeout,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
    )
    return uvicorn.Server(settings)


def serve(config: ServeConfig, setup: Callable[[FastAPI], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; a model that fails to load ends the process with its error."""
    server = uvicorn_server(config, setup)
    # uvicorn re-raises SIGTERM after its graceful shutdown; a drained shutdown is a normal exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()
    if not server.started:
        raise SystemExit(1)
