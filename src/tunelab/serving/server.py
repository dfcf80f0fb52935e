"""Run the HTTP server: ``tunelab.serve(RUN_DIR, adapters=...)`` and ``tunelab serve``.

FastAPI and uvicorn are the ``serve`` extra, imported only here (a one-line error names the
install command when they are missing). The socket is bound before the models load, so a
port in use fails at once, and port 0 takes a free port (the first line printed names it).
uvicorn's SIGTERM/SIGINT handling stops accepting connections, lets in-flight requests finish
(``drain_s`` at most), then the worker finishes its queue and the process exits.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tunelab.serving.app import ServeSettings

API_KEY_ENV = "TUNELAB_API_KEY"
INSTALL_HINT = "pip install 'tunelab[serve]'"


def require_serve_extra() -> None:
    """A one-line error when FastAPI or uvicorn is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise TunelabError(f"serving needs {exc.name}: {INSTALL_HINT}") from None


def build_app(
    run_dir: str | Path,
    adapters: dict[str, str | Path] | None = None,
    settings: ServeSettings | None = None,
    name: str | None = None,
) -> FastAPI:
    """The ASGI app serving a run and its named adapters (for any ASGI server)."""
    require_serve_extra()
    from tunelab.serving.app import make_app
    from tunelab.serving.engine import load_engine

    paths = {key: Path(value) for key, value in (adapters or {}).items()}
    return make_app(load_engine(run_dir, paths, name), settings)


def serve(
    run_dir: str | Path,
    adapters: dict[str, str | Path] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    name: str | None = None,
    drain_s: float = 60.0,
    say=print,
) -> None:
    """Serve a run on ``host:port`` until SIGTERM/SIGINT (in-flight requests finish first)."""
    require_serve_extra()
    import uvicorn

    from tunelab.serving.app import ServeSettings

    settings = settings or ServeSettings()
    sock = bind(host, port)
    app = build_app(run_dir, adapters, settings, name)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=int(drain_s)
    )
    names = ", ".join(app.state.models)
    shown = f"[{host}]" if ":" in host else host
    say(f"tunelab serve: http://{shown}:{bound}/v1 {names}".rstrip())
    if not _loopback(host) and settings.api_key is None:
        say(f"warning: {host} is reachable from other machines and no API key is set (--api-key)")
    uvicorn.Server(config).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (one-line error when it cannot be had)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TunelabError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
