"""Start the app with uvicorn on a socket bound here, so that the printed URL is the one actually listening
(``--port 0`` picks a free port) and a port in use is one clear line rather than a traceback."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from microexp.errors import ConfigError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); give another --port "
                          "(0 picks a free one)") from None
    sock.listen(128)
    return sock


def serve(runs: Path, host: str = LOOPBACK, port: int = 8000, max_upload_mb: float = 512, workers: int = 1,
          announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C): jobs are then stopped and their temporary files deleted."""
    import uvicorn

    from microexp.serve.app import create_app

    if not is_loopback(host):
        print(f"microexp serve: warning: listening on {host}, not on {LOOPBACK}: other machines can reach this "
              "server, its runs and its uploads; there is no login", file=sys.stderr)
    hosts = ["127.0.0.1", "localhost", "[::1]"] if is_loopback(host) else ["*"]
    app = create_app(runs, max_upload_mb=max_upload_mb, workers=workers, allowed_hosts=hosts)
    sock = bind(host, port)
    shown = sock.getsockname()[0]
    url_host = f"[{shown}]" if ":" in shown else shown
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    announce(f"microexp serve: http://{url_host}:{sock.getsockname()[1]}/ (runs from {Path(runs).resolve()}; "
             "Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
