"""The pieces that need no server: schema reading, load splitting, sweep verdicts, tables."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.leads import SchemaError, as_matrix, load_schema, random_rows, score_leads_request
from benchmarks.loadgen import LoadShape
from benchmarks.runner import LoadError, check_shape, plans
from benchmarks.suite import BenchError, _parse_oip
from benchmarks.targets import GrpcUnaryTarget

CONFIG = """
name = "m"

[bands]
hot = 0.7
warm = 0.4

[[features]]
name = "age"
type = "number"
min = 18.0
max = 100.0

[[features]]
name = "retiring"
type = "boolean"

[[features]]
name = "channel"
type = "category"
categories = ["referral", "web", "event"]
"""


def _target() -> GrpcUnaryTarget:
    return GrpcUnaryTarget("t", "127.0.0.1:1", "/x/Y", (b"",), 1)


def test_schema_rows_and_requests(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.toml").write_text(CONFIG)
    schema = load_schema(tmp_path, "m")
    assert [(f.name, f.kind) for f in schema] == [
        ("age", "number"),
        ("retiring", "flag"),
        ("channel", "category"),
    ]
    rows = random_rows(schema, 5, random.Random(0))
    matrix = as_matrix(schema, rows)
    assert matrix.shape == (5, 3) and matrix.dtype.name == "float32"
    assert all(18 <= v <= 100 for v in matrix[:, 0])
    assert set(matrix[:, 2]) <= {0.0, 1.0, 2.0}
    request = score_leads_request(schema, rows, "m")
    assert len(request.leads) == 5
    assert request.leads[0].features["channel"].WhichOneof("kind") == "category"
    assert request.leads[0].features["retiring"].WhichOneof("kind") == "flag"


def test_the_bench_refuses_a_config_the_gateway_refuses(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.toml").write_text(CONFIG.replace("min = 18.0", "minimum = 18.0"))
    with pytest.raises(SchemaError, match="unknown key 'minimum' in \\[\\[features\\]\\] 'age'"):
        load_schema(tmp_path, "m")


def test_closed_loop_concurrency_is_split_across_processes() -> None:
    split = plans(_target(), LoadShape("closed", concurrency=5, processes=2))
    assert [p.concurrency for p in split] == [3, 2]
    assert len(plans(_target(), LoadShape("closed", concurrency=1, processes=4))) == 1


def test_open_loop_rate_is_split_and_fixed_arrivals_interleave() -> None:
    split = plans(_target(), LoadShape("open", rate=300.0, processes=3))
    assert [p.rate for p in split] == [100.0, 100.0, 100.0]
    assert [p.phase_s for p in split] == pytest.approx([0, 1 / 300, 2 / 300])


def test_impossible_rates_are_refused() -> None:
    with pytest.raises(LoadError, match="more than 2 generator"):
        check_shape(LoadShape("open", rate=1e9, processes=2), 2, "t")
    with pytest.raises(LoadError, match="positive"):
        check_shape(LoadShape("open", rate=float("nan")), 2, "t")


def test_oip_specs() -> None:
    assert _parse_oip("triton=127.0.0.1:8001/lead_scorer") == (
        "triton",
        "127.0.0.1:8001",
        "lead_scorer",
    )
    assert _parse_oip("127.0.0.1:8001/m")[0] == "oip:127.0.0.1:8001/m"
    with pytest.raises(BenchError):
        _parse_oip("127.0.0.1:8001")
