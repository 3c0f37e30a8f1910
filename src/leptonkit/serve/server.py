"""Run the app under uvicorn: SIGTERM stops accepting, lets in-flight requests finish within the grace period,
unloads the models and exits 0."""

from __future__ import annotations

import signal
import sys

import uvicorn

from leptonkit.serve.app import create_app
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.http import with_header_timeout


def uvicorn_server(config: ServeConfig) -> uvicorn.Server:
    app = create_app(config)
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


def serve(config: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM; a model that fails to load ends the process with its error."""
    server = uvicorn_server(config)
    # uvicorn re-raises SIGTERM after its graceful shutdown; a drained shutdown is a normal exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()
    if not server.started:
        raise SystemExit(1)
