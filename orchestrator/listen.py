"""A listening TCP socket for the project's local web servers (the simulator, the review app), bound before uvicorn
runs so that a port 0 becomes a real, known port and a port in use is one clear line."""

from __future__ import annotations

import socket

from orchestrator.errors import ConfigError


def bind_socket(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A non-blocking socket listening on ``host:port``; ``ConfigError`` naming the address when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only turns Nagle off (TCP_NODELAY) on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def url_for(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket (brackets around an IPv6 host)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
