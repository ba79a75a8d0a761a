"""An OpenAI-compatible ``/v1/embeddings`` endpoint on loopback, answering with a real model.

The vectors are the local MiniLM's, cut to their first ``dims`` columns: a second embedder of
another size whose rankings still mean something, without downloading a second model. It can be
told to fail (HTTP 503) once it has answered a number of requests, as a provider that goes down.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from retrieval.embedder import OnnxEmbedder


class EmbeddingsServer:
    def __init__(self, model: OnnxEmbedder, dims: int) -> None:
        self.model = model
        self.dims = dims
        self.texts = 0  # texts embedded so far (probes included)
        self.fail_after: int | None = None  # requests answered before every later one fails
        self._requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if self.fail_after is not None and self._requests >= self.fail_after:
                return None
            self._requests += 1
            self.texts += len(body["input"])
        vectors = self.model.embed_sync(body["input"])[:, : self.dims]
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }


def _handler(owner: EmbeddingsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = owner.answer(body)
            if reply is None:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    return Handler
