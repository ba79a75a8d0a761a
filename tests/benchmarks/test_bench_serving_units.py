"""The pieces of the serving targets that need no load: the keys file the flood bench writes is one
the gateway accepts with the limits asked for, the shadow bench's repository copy pins the live
version, the metrics reader adds up series, and SearchNotes requests carry their scope."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from bench_helpers import ROOT

from benchmarks.flood_suite import FLOODER, STEADY, bearer, write_keys_file
from benchmarks.notes_search_suite import SHORT_QUERIES, query_texts, search_requests
from benchmarks.shadow_suite import distinct_leads, metric_sum, prepare_repository
from gateway.auth import KeyStore
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.config_file import ModelConfigFile
from runtimes.routing import RoutingPolicy

BUNDLED = ROOT / "runtimes" / "bundled_models"


def test_flood_keys_file_is_accepted_by_the_gateway_with_each_tenants_limit(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    keys = write_keys_file(path, flood_limit=12.5, steady_limit=300.0)
    store = KeyStore.from_file(path)
    assert len(store) == 2
    for tenant in (FLOODER, STEADY):
        caller = store.authenticate(bearer(keys[tenant]))
        assert caller.tenant == tenant and caller.scopes == frozenset({"score"})
    assert store.limits_of(FLOODER).requests_per_s == 12.5
    assert store.limits_of(STEADY).requests_per_s == 300.0
    # Only the hashes are stored.
    assert keys[FLOODER] not in path.read_text() and keys[STEADY] not in path.read_text()


def test_shadow_repository_copy_pins_the_live_version(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    repository.mkdir()
    live, candidate = prepare_repository(BUNDLED, "lead_scorer", repository, "copy")
    assert (live, candidate) == ("1", "2")
    model = repository / "lead_scorer"
    assert (model / "2" / "model.onnx").read_bytes() == (model / "1" / "model.onnx").read_bytes()
    raw = tomllib.loads((model / "config.toml").read_text())
    ModelConfigFile.model_validate(raw)  # still a valid model config
    assert RoutingPolicy.from_table(raw["routing"], "config.toml").live == "1"
    # The bundled model itself is untouched.
    assert "routing" not in tomllib.loads((BUNDLED / "lead_scorer" / "config.toml").read_text())


def test_shadow_repository_refuses_an_unknown_model(tmp_path: Path) -> None:
    from benchmarks.targets import TargetError

    with pytest.raises(TargetError, match="no model 'nope'"):
        prepare_repository(BUNDLED, "nope", tmp_path, "copy")


def test_metric_sum_adds_every_series_of_one_name_only() -> None:
    text = "\n".join(
        [
            "# HELP leadgw_shadow_leads_total leads scored by both",
            "# TYPE leadgw_shadow_leads_total counter",
            'leadgw_shadow_leads_total{band_agreement="agree",worker="0"} 80.0',
            'leadgw_shadow_leads_total{band_agreement="disagree",worker="1"} 3.0',
            "leadgw_shadow_leads_total_created 1.7e9",
            'leadgw_shadow_dropped_total{model="lead_scorer"} 2.0',
        ]
    )
    assert metric_sum(text, "leadgw_shadow_leads_total") == 83.0
    assert metric_sum(text, "leadgw_shadow_dropped_total") == 2.0
    assert metric_sum(text, "leadgw_missing_total") == 0.0


def test_search_requests_carry_their_scope() -> None:
    texts = ["annuity rollover", "retirement plan", "college savings"]
    tenant = [pb.SearchNotesRequest.FromString(b) for b in search_requests("tenant", texts, 300)]
    lead = [pb.SearchNotesRequest.FromString(b) for b in search_requests("lead", texts, 300)]
    assert [r.query for r in tenant] == texts and {r.lead_id for r in tenant} == {""}
    assert [r.lead_id for r in lead] == ["lead-0000", "lead-0001", "lead-0002"]
    assert {r.top_k for r in tenant + lead} == {5}


def test_lead_requests_ask_only_about_leads_the_fill_gave_notes() -> None:
    """With 2 notes only lead-0000 and lead-0001 have any: a third query asking about
    lead-0002 would be NotFound, an error the bench would count against the gateway."""
    texts = ["annuity rollover", "retirement plan", "college savings"]
    lead = [pb.SearchNotesRequest.FromString(b) for b in search_requests("lead", texts, 2)]
    assert [r.lead_id for r in lead] == ["lead-0000", "lead-0001", "lead-0000"]


def test_short_queries_are_a_few_words_and_note_queries_whole_note_texts() -> None:
    short = query_texts("short", 20)
    assert short[:16] == list(SHORT_QUERIES) and short[16:] == list(SHORT_QUERIES[:4])
    assert max(len(q.split()) for q in short) <= 4
    notes = query_texts("note", 8)
    assert len(notes) == 8 and min(len(q.split()) for q in notes) > 4


def test_shadow_requests_get_distinct_lead_ids_and_keep_their_features() -> None:
    pool = [pb.ScoreLeadsRequest(model_name="m") for _ in range(3)]
    for i, request in enumerate(pool):
        request.leads.add(lead_id=f"lead-{i}").features["age"].number = 40.0 + i
    columns = pb.ScoreLeadsRequest(model_name="m")
    columns.columns.lead_ids.extend(["lead-7", "lead-8"])
    payloads = tuple(r.SerializeToString() for r in [*pool, columns])
    out = [pb.ScoreLeadsRequest.FromString(p) for p in distinct_leads(payloads, 4)]
    assert len(out) == 16
    assert [r.HasField("columns") for r in out[:4]] == [False, False, False, True]
    ids = [lead.lead_id for r in out for lead in r.leads] + [
        lead_id for r in out for lead_id in r.columns.lead_ids
    ]
    assert len(ids) == len(set(ids)) == 4 * 5
    assert "lead-2-3" in ids and "lead-8-0" in ids
    assert [r.leads[0].features["age"].number for r in out[4:7]] == [40.0, 41.0, 42.0]
