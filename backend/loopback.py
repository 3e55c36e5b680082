"""Serve a Sanic app on a free loopback port inside the running event loop (tests, fakes, benchmarks)."""

from __future__ import annotations

import socket
from typing import Any

from sanic import Sanic


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


async def start_app(app: Sanic, sock: socket.socket | None = None) -> tuple[Any, str]:
    """Returns (server, base URL); stop it with `stop_app`. Give `sock` (from `free_socket`) when the app must know
    its port before it is built, as a development server's fakes do."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    await server.start_serving()
    return server, f"http://127.0.0.1:{port}"


async def stop_app(server: Any) -> None:
    await server.before_stop()
    await server.close()
    await server.after_stop()
