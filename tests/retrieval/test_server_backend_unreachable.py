"""A Qdrant server that does not answer is ``Unavailable``, the error every caller of the store
handles (the gateway's start, the ``leadgw.notes`` probe), not qdrant-client's own."""

from __future__ import annotations

import socket

import pytest

from retrieval.backend import NOTES, PointWrite, SearchSpec
from retrieval.filters import Filter
from retrieval.server_backend import ServerBackend
from runtimes.errors import Unavailable


def _closed_port() -> int:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_an_unreachable_server_is_unavailable() -> None:
    backend = ServerBackend.connect(f"http://127.0.0.1:{_closed_port()}", None)
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            backend.ensure_schema(384)
        with pytest.raises(Unavailable, match="unreachable"):
            backend.health()
        # And every call a notes RPC makes: the caller sees UNAVAILABLE, not INTERNAL.
        calls = {
            "search": lambda: backend.search([SearchSpec([0.1] * 384, "annuity", Filter(), 8)]),
            "upsert": lambda: backend.upsert(NOTES, [PointWrite("p-1", {}, [0.1] * 384)]),
            "count": lambda: backend.count(NOTES, Filter()),
            "scroll": lambda: backend.scroll(NOTES, Filter(), True, limit=3),
            "delete": lambda: backend.delete(NOTES, Filter()),
            "set_payload": lambda: backend.set_payload(NOTES, {"a": 1}, Filter()),
            "stored_dim": backend.stored_dim,
        }
        for name, call in calls.items():
            with pytest.raises(Unavailable, match="unreachable"):
                call()
                pytest.fail(f"{name} reached no server and raised nothing")
    finally:
        backend.close()
