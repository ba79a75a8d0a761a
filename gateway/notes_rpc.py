"""IndexNotes, DeleteNotes and SearchNotes: protobuf ↔ the notes core.

Pure conversion around :class:`retrieval.notes.NotesService`; the tenant comes from the caller's
credentials, never from the request. Errors are the core's domain exceptions, mapped to gRPC
statuses in one place (``gateway.errors``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.lead_codec import leads_from_pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from retrieval.notes import NotesService
from retrieval.report import IndexReport, IndexStatus
from retrieval.types import NoteHit, NoteRecord
from runtimes.errors import InvalidInput, shown
from runtimes.schema import FeatureSchema

DEFAULT_TOP_K = 5

_STATUS_TO_PB = {
    IndexStatus.ADDED: pb.NoteResult.STATUS_ADDED,
    IndexStatus.UPDATED: pb.NoteResult.STATUS_UPDATED,
    IndexStatus.UNCHANGED: pb.NoteResult.STATUS_UNCHANGED,
    IndexStatus.REJECTED: pb.NoteResult.STATUS_REJECTED,
}


# What google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999


def timestamp_to_datetime(ts: Timestamp, field: str) -> datetime:
    """The instant as an aware datetime; InvalidInput naming ``field`` if it is out of range."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        raise InvalidInput(
            f"{field} has seconds {ts.seconds}, outside years 1 to 9999 "
            f"([{MIN_TIMESTAMP_SECONDS}, {MAX_TIMESTAMP_SECONDS}])"
        )
    if not 0 <= ts.nanos <= MAX_NANOS:
        raise InvalidInput(f"{field} has nanos {ts.nanos}, outside [0, {MAX_NANOS}]")
    return ts.ToDatetime(tzinfo=UTC)


def datetime_to_timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def note_from_pb(note: pb.Note, now: datetime, where: str = "note") -> NoteRecord:
    """An unset ``created_at`` means "now" (the time the gateway received the note)."""
    created = (
        timestamp_to_datetime(
            note.created_at, f"{where} (note_id {shown(note.note_id)}) created_at"
        )
        if note.HasField("created_at")
        else now
    )
    return NoteRecord(
        note_id=note.note_id,
        lead_id=note.lead_id,
        kind=note.kind,
        text=note.text,
        created_at=created,
        title=note.title,
    )


def report_to_pb(report: IndexReport) -> pb.IndexNotesResponse:
    return pb.IndexNotesResponse(
        results=[
            pb.NoteResult(note_id=r.note_id, status=_STATUS_TO_PB[r.status], error=r.error)
            for r in report.results
        ],
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=report.rejected,
        leads_upserted=report.leads_upserted,
    )


def hit_to_pb(hit: NoteHit) -> pb.NoteHit:
    note = hit.note
    return pb.NoteHit(
        note_id=note.note_id,
        lead_id=note.lead_id,
        kind=note.kind,
        text=note.text,
        created_at=datetime_to_timestamp(note.created_at),
        score=hit.score,
        title=note.title,
    )


async def index_notes(
    notes: NotesService, tenant: str, request: pb.IndexNotesRequest, schema: FeatureSchema
) -> pb.IndexNotesResponse:
    """``schema``: the served model's, which checks each lead profile as ScoreLeads checks a
    lead's features; a profile it would refuse could never be scored for a summary."""
    now = datetime.now(UTC)
    records = [note_from_pb(n, now, f"notes[{i}]") for i, n in enumerate(request.notes)]
    leads = leads_from_pb(request.leads)
    if leads:
        schema.encode(leads)
    report = await notes.index(tenant, records, leads)
    return report_to_pb(report)


async def delete_notes(
    notes: NotesService, tenant: str, request: pb.DeleteNotesRequest
) -> pb.DeleteNotesResponse:
    deleted = await notes.delete(tenant, list(request.note_ids), request.lead_id or None)
    return pb.DeleteNotesResponse(deleted=deleted)


async def search_notes(
    notes: NotesService, tenant: str, request: pb.SearchNotesRequest
) -> pb.SearchNotesResponse:
    hits = await notes.search(
        tenant,
        request.query,
        lead_id=request.lead_id or None,
        kinds=list(request.kinds),
        since=timestamp_to_datetime(request.since, "since") if request.HasField("since") else None,
        until=timestamp_to_datetime(request.until, "until") if request.HasField("until") else None,
        top_k=request.top_k or DEFAULT_TOP_K,
    )
    return pb.SearchNotesResponse(hits=[hit_to_pb(h) for h in hits])
