"""The local MiniLM embedder against the original model's vectors, and the OpenAI-compatible one
against a loopback endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedder import MAX_TOKENS, OnnxEmbedder, OpenAIEmbedder, load_tokenizer
from runtimes.errors import Unavailable

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


async def test_matches_the_original_model(embedder: OnnxEmbedder, reference: dict) -> None:
    assert reference["max_tokens"] == MAX_TOKENS
    vectors = await embedder.embed(reference["texts"])
    expected = np.array(reference["embeddings"], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosines = (vectors * expected).sum(axis=1)
    assert vectors.shape == (len(reference["texts"]), 384)
    assert cosines.min() >= 0.999, cosines


async def test_rows_are_unit_float32(embedder: OnnxEmbedder) -> None:
    vectors = await embedder.embed(["Wants to retire early.", "New baby, asked about 529 plans."])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (await embedder.embed([])).shape == (0, 384)


async def test_batching_equals_one_by_one(embedder: OnnxEmbedder, reference: dict) -> None:
    # More texts than one batch (8), of mixed lengths, so padding and reordering both happen.
    texts = [*reference["texts"], "Short.", "Inherited a house in Denver and a brokerage account."]
    batched = await embedder.embed(texts)
    single = np.vstack([await embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


async def test_texts_past_the_token_limit_are_truncated(embedder: OnnxEmbedder) -> None:
    head = "The client wants to roll over a 401k into an IRA. " * 40  # far past 256 tokens
    assert len(load_tokenizer(None).encode(head).ids) > 2 * MAX_TOKENS
    long_vec, head_vec = await embedder.embed([head + "Unrelated tail about sailing.", head])
    # Everything after token 256 is cut, so the tail cannot change the vector.
    np.testing.assert_allclose(long_vec, head_vec, atol=1e-6)


class _FakeEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings returning unnormalised vectors, out of order."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"]
        if any("boom" in t for t in texts):
            self.send_response(503)
            self.end_headers()
            return
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 3.0, 4.0]}
            for i, t in enumerate(texts)
        ]
        payload = json.dumps(
            {
                "object": "list",
                "model": body["model"],
                "data": list(reversed(data)),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def embeddings_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_openai_endpoint_same_interface(embeddings_url: str) -> None:
    emb = await OpenAIEmbedder.open(embeddings_url, "test-model", None)
    try:
        assert emb.dim == 3
        assert emb.name == "openai:test-model"
        vectors = await emb.embed(["", "abcd"])
        # Reordered by index and L2-normalised: [0, 3, 4] / 5 and [4, 3, 4] / sqrt(41).
        np.testing.assert_allclose(vectors[0], [0.0, 0.6, 0.8], atol=1e-6)
        np.testing.assert_allclose(vectors[1], np.array([4, 3, 4]) / np.sqrt(41), atol=1e-6)
        with pytest.raises(Unavailable, match="embeddings endpoint"):
            await emb.embed(["boom"])
    finally:
        await emb.close()
