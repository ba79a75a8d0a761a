"""``OnnxSession.run`` calls the session's own run, skipping the public wrapper's per-call
checks: the same outputs, bit for bit, and the same errors as the public ``run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtimes.model_config import find_config, load_config
from runtimes.session import OnnxSession

MODEL_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "bundled_models" / "lead_scorer"


@pytest.fixture(scope="module")
def session() -> OnnxSession:
    config = load_config(find_config(MODEL_DIR, MODEL_DIR / "1"))
    return OnnxSession(MODEL_DIR / "1" / "model.onnx", config.onnxruntime, config.output_names)


def public_run(session: OnnxSession, features: np.ndarray) -> dict[str, np.ndarray]:
    results = session._session.run(session.output_names, {session.input_name: features})
    return dict(zip(session.output_names, results, strict=True))


def test_the_direct_run_is_taken_and_equals_the_public_run(session: OnnxSession) -> None:
    assert session._run_graph is not None  # else this test would compare the public run twice
    rng = np.random.default_rng(3)
    for rows in (1, 7, 100):
        features = rng.uniform(0, 50, (rows, session.width)).astype(np.float32)
        direct, public = session.run(features), public_run(session, features)
        assert direct.keys() == public.keys()
        for name in direct:
            np.testing.assert_array_equal(direct[name], public[name])


def test_without_the_inner_session_the_public_run_serves(
    session: OnnxSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = np.ones((3, session.width), dtype=np.float32)
    expected = session.run(features)
    monkeypatch.setattr(session, "_run_graph", None)
    fallback = session.run(features)
    for name in expected:
        np.testing.assert_array_equal(fallback[name], expected[name])


def test_a_wrong_shape_fails_as_the_public_run_fails(session: OnnxSession) -> None:
    wrong = np.ones((2, session.width + 1), dtype=np.float32)
    with pytest.raises(Exception) as public:
        public_run(session, wrong)
    with pytest.raises(type(public.value)):
        session.run(wrong)
    assert issubclass(type(public.value), ort.capi.onnxruntime_pybind11_state.InvalidArgument)
