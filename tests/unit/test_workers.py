"""Workers sharing a port: the supervisor refuses a port anyone serves, and its own workers share it; SQLite refused."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.common.server import PortInUseError
from services.common.settings import Settings
from services.workers import WorkersError, check_workers, reserve_port


def _listening(port: int = 0, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_port_another_program_serves_is_refused_even_if_it_shares_by_so_reuseport(
    sockets: list[socket.socket], reuse_port: bool
) -> None:
    other = _listening(reuse_port=reuse_port)
    sockets.append(other)
    with pytest.raises(PortInUseError, match="another sandbox"):
        reserve_port("127.0.0.1", other.getsockname()[1])


def test_the_reserved_port_is_shared_by_the_workers_only(sockets: list[socket.socket]) -> None:
    guard = reserve_port("127.0.0.1", 0)
    sockets.append(guard)
    port = guard.getsockname()[1]
    # The workers bind as gRPC does with so_reuseport on, and serve.
    workers = [_listening(port, reuse_port=True) for _ in range(2)]
    sockets.extend(workers)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # A second supervisor, and a plain server (gRPC with so_reuseport off), are refused while the first runs.
    with pytest.raises(PortInUseError):
        reserve_port("127.0.0.1", port)
    with pytest.raises(OSError):
        _listening(port, reuse_port=False).close()


def test_more_than_one_worker_needs_postgresql() -> None:
    check_workers(Settings(database_url="sqlite:///x.db", workers=1))
    check_workers(Settings(database_url="postgresql://postgres@db/registry", workers=4))
    with pytest.raises(WorkersError, match="needs PostgreSQL"):
        check_workers(Settings(database_url="sqlite:///x.db", workers=2))
