"""``imaginarium web``: serve the web gallery (uvicorn).

Behind a reverse proxy, set ``WEB_BASE_URL`` to the public https:// URL and let the proxy
pass ``X-Forwarded-For`` / ``X-Forwarded-Proto``; ``--forwarded-allow-ips`` names the proxy
(default: 127.0.0.1) so that only its headers are believed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from typing import Any


def _parser(default_host: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imaginarium web", description="Serve the web gallery.")
    parser.add_argument(
        "--host", default=default_host, help=f"address to listen on (WEB_HOST; default {default_host})"
    )
    parser.add_argument(
        "--port", type=int, default=default_port, help=f"port (WEB_PORT; default {default_port})"
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="the reverse proxy's addresses whose X-Forwarded-* headers are trusted (default 127.0.0.1)",
    )
    return parser


def web_main(argv: list[str]) -> int:
    """Run ``imaginarium web [--host H] [--port P]``; returns the exit status."""
    import uvicorn

    from core.logs import configure_logging
    from core.settings import load_settings
    from core.store import open_image_reader
    from db.embedded import open_services_sync
    from db.session import create_engine, create_session_factory
    from web.app import create_app
    from web.config import WebConfig

    settings = load_settings()
    args = _parser(settings.web_host, settings.web_port).parse_args(argv)
    configure_logging(settings.log_level, settings.log_format)
    with open_services_sync(settings, migrate=True, broker=False) as urls:
        engine = create_engine(urls.database_url)
        app = create_app(
            WebConfig.from_settings(settings), create_session_factory(engine), open_image_reader(settings)
        )
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            proxy_headers=True,
            forwarded_allow_ips=args.forwarded_allow_ips,
            log_level=settings.log_level.lower(),
            # Off: a mask editor's signed link is in its URL.
            access_log=False,
        )
        _server_class()(config).run()
    return 0


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGTERM / SIGINT once it has stopped (which would
        end the process before the embedded Postgres it started is let go)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server
