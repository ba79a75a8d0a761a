"""The seeded demo corpus: deterministic, plausible, consistent with the lead model's schema."""

from __future__ import annotations

from datetime import timedelta

from notes_helpers import NOW

from retrieval.demo_corpus import demo_corpus, demo_leads, load_demo_corpus_if_empty
from retrieval.notes import NotesService
from retrieval.validation import check_note
from runtimes.schema import FeatureSchema
from runtimes.training.features import CHANNELS, feature_tables


def test_same_seed_same_corpus() -> None:
    assert demo_corpus(6, seed=3, now=NOW) == demo_corpus(6, seed=3, now=NOW)
    assert demo_corpus(6, seed=3, now=NOW) != demo_corpus(6, seed=4, now=NOW)


def test_leads_are_plausible_and_consistent() -> None:
    leads = demo_leads(20, seed=7, now=NOW)
    assert [lead.lead_id for lead in leads[:2]] == ["demo-0001", "demo-0002"]
    assert len({lead.story for lead in leads}) >= 5
    for lead in leads:
        assert 5 <= len(lead.notes) <= 15
        texts = " ".join(n.text.lower() for n in lead.notes)
        for note in lead.notes:
            check_note(note)  # raises on anything the store would reject
            assert note.lead_id == lead.lead_id
            assert NOW - timedelta(days=181) <= note.created_at <= NOW
        assert lead.features["webinar_attended"] == ("webinar" in texts)
        assert lead.features["meeting_booked"] == any(n.kind == "meeting" for n in lead.notes)
        newest = max(n.created_at for n in lead.notes)
        assert abs(lead.features["days_since_last_touch"] - (NOW - newest).days) <= 1
        assert (
            lead.features[lead.story if lead.story != "retiring_soon" else "retiring_within_5y"]
            is True
        )
        assert lead.features["channel"] in CHANNELS


def test_profiles_encode_with_the_lead_models_schema() -> None:
    _, profiles = demo_corpus(10, seed=7, now=NOW)
    schema = FeatureSchema.from_config({"features": feature_tables()})
    assert {name for p in profiles for name in p.features} == set(schema.names)
    assert schema.encode(profiles).shape == (10, schema.width)


async def test_loader_fills_an_empty_tenant_once(notes: NotesService) -> None:
    notes_in, profiles = demo_corpus(3, seed=7, now=NOW)
    report = await load_demo_corpus_if_empty(notes, n=3, now=NOW)
    assert report is not None
    assert (report.added, report.rejected) == (len(notes_in), 0)
    assert report.leads_upserted == 3
    assert await load_demo_corpus_if_empty(notes, n=3, now=NOW) is None
    assert await notes.count_notes("default") == len(notes_in)
    assert await notes.count_notes("other") == 0
    assert await notes.lead_profile("default", "demo-0001") == profiles[0].features
    hits = await notes.search("default", "what do you charge", kinds=["document"], top_k=1)
    assert hits[0].note.note_id == "doc-fee-schedule"
