"""The local MiniLM embedder, in both its forms, against the original model's vectors, and the
OpenAI-compatible one against a loopback endpoint."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from retrieval.config import EmbedderConfig
from retrieval.embedder import (
    LOCAL_EMBEDDERS,
    MAX_TOKENS,
    MINILM_DQ_NAME,
    MINILM_NAME,
    OnnxEmbedder,
    OpenAIEmbedder,
    dynamic_quant_model,
    load_tokenizer,
    minilm_model_path,
)
from runtimes.errors import Unavailable

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.fixture(params=[MINILM_DQ_NAME, MINILM_NAME])
def either(request: pytest.FixtureRequest) -> OnnxEmbedder:
    """Each form of the local model in turn (the session's sessions, loaded once)."""
    name = "embedder" if request.param == MINILM_DQ_NAME else "float_embedder"
    emb = request.getfixturevalue(name)
    assert emb.name == request.param
    return emb


def test_the_default_is_the_integer_form() -> None:
    assert EmbedderConfig().local == MINILM_DQ_NAME == LOCAL_EMBEDDERS[0]
    assert inspect.signature(OnnxEmbedder).parameters["name"].default == MINILM_DQ_NAME


# The float form is the exported model itself; the integer form quantizes each layer's inputs
# to 8 bits as well, which costs some agreement (0.990-0.995 on these texts), never more than
# stays in the upper 0.98s (0.986 the lowest over the 429 demo notes, docs/perf).
@pytest.mark.parametrize(("name", "floor"), [(MINILM_NAME, 0.999), (MINILM_DQ_NAME, 0.985)])
async def test_matches_the_original_model(
    name: str, floor: float, reference: dict, request: pytest.FixtureRequest
) -> None:
    embedder = request.getfixturevalue("embedder" if name == MINILM_DQ_NAME else "float_embedder")
    assert reference["max_tokens"] == MAX_TOKENS
    vectors = await embedder.embed(reference["texts"])
    expected = np.array(reference["embeddings"], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosines = (vectors * expected).sum(axis=1)
    assert vectors.shape == (len(reference["texts"]), 384)
    assert cosines.min() >= floor, cosines


async def test_the_two_forms_make_different_vectors(
    embedder: OnnxEmbedder, float_embedder: OnnxEmbedder, reference: dict
) -> None:
    # Why they have two names and a store never mixes them: close, but not the same vectors.
    dq = await embedder.embed(reference["texts"])
    fp = await float_embedder.embed(reference["texts"])
    cosines = (dq * fp).sum(axis=1)
    assert cosines.min() > 0.98, cosines
    assert cosines.max() < 0.9999, cosines


def test_the_rewrite_runs_every_weight_matrix_on_integers() -> None:
    import onnx

    model = onnx.load_from_string(dynamic_quant_model(minilm_model_path()))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 36
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    # Left as MatMul: only the attention products (activations by activations), 12 of them.
    float_matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert len(float_matmuls) == 12
    assert not any(i in int8 for n in float_matmuls for i in n.input)
    # The weights are the file's own int8 tensors, not dequantized copies.
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeMatMul":
            assert node.input[1] in int8


def test_a_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="0 int8 weight matrices found, expected 36"):
        dynamic_quant_model(path)


def test_an_unknown_local_embedder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown local embedder 'minilm-fp16'"):
        OnnxEmbedder(name="minilm-fp16")


async def test_rows_are_unit_float32(either: OnnxEmbedder) -> None:
    embedder = either
    vectors = await embedder.embed(["Wants to retire early.", "New baby, asked about 529 plans."])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (await embedder.embed([])).shape == (0, 384)


async def test_batching_equals_one_by_one(either: OnnxEmbedder, reference: dict) -> None:
    # More texts than one batch (8), of mixed lengths, so padding and reordering both happen.
    # The integer form quantizes a call's activations with one range for all its texts: it
    # must embed them one by one, or a note's vector would depend on its batch (cosine ~0.99).
    embedder = either
    texts = [*reference["texts"], "Short.", "Inherited a house in Denver and a brokerage account."]
    batched = await embedder.embed(texts)
    single = np.vstack([await embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


async def test_texts_past_the_token_limit_are_truncated(either: OnnxEmbedder) -> None:
    embedder = either
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
