"""The ``leadgw`` command line, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from leads_helpers import sample_leads

from gateway import lead_codec
from gateway.auth import KeyStore
from gateway.cli.score import read_leads
from runtimes.types import LeadInput

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "leads.jsonl"


def leadgw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_help_lists_every_command() -> None:
    done = leadgw("--help")
    assert done.returncode == 0
    for command in ("serve", "score", "summarize", "models", "keys", "train", "index", "bench"):
        assert command in done.stdout
    serve_help = leadgw("serve", "--help").stdout
    assert "--port" in serve_help and "LEADGW_" in serve_help


def test_score_json_is_ranked(shared_gateway) -> None:
    done = leadgw("score", str(EXAMPLE), "--address", shared_gateway.address, "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == sum(1 for line in EXAMPLE.read_text().splitlines() if line.strip())
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    probabilities = [r["probability"] for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(len(r["reasons"]) == 3 and r["band"] in ("hot", "warm", "cold") for r in rows)


def test_score_table_and_csv(shared_gateway, tmp_path: Path) -> None:
    csv_file = tmp_path / "leads.csv"
    csv_file.write_text(
        "lead_id,age,channel,retiring_within_5y,investable_assets\n"
        "a-1,61,referral,true,900000\n"
        "a-2,35,cold_list,false,\n"
    )
    done = leadgw("score", str(csv_file), "--address", shared_gateway.address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "lead", "p(convert)", "band"]
    assert lines[1].split()[1] == "a-1"  # the retiring referral with assets ranks first
    assert "Came via" in done.stdout or "Retiring" in done.stdout


def test_score_reports_bad_files_and_bad_leads(shared_gateway, tmp_path: Path) -> None:
    missing = leadgw("score", str(tmp_path / "nope.jsonl"), "--address", shared_gateway.address)
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"lead_id": "x", "features": {"channel": "web"}}\n{not json\n')
    bad_json = leadgw("score", str(broken), "--address", shared_gateway.address)
    assert bad_json.returncode == 2 and "broken.jsonl:2" in bad_json.stderr
    invalid = tmp_path / "invalid.jsonl"
    invalid.write_text('{"lead_id": "x", "features": {"channel": "web", "age": 400}}\n')
    refused = leadgw("score", str(invalid), "--address", shared_gateway.address)
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr and "'x'" in refused.stderr


def test_score_unreachable_gateway_fails_fast() -> None:
    done = leadgw("score", str(EXAMPLE), "--address", "127.0.0.1:1", "--timeout", "2")
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stderr or "DEADLINE_EXCEEDED" in done.stderr


def test_models_lists_what_is_loaded(shared_gateway) -> None:
    done = leadgw("models", "--address", shared_gateway.address, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {(r["model"], r["version"], r["state"]) for r in rows} >= {("lead_scorer", "1", "READY")}
    assert any("features FP32" in line for line in rows[0]["inputs"])


def test_keys_create_writes_a_usable_hashed_entry(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    done = leadgw(
        "keys", "create", "--tenant", "acme", "--scopes", "score,index", "--keys-file", str(keys)
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.split("API key (shown once): ")[1].strip()
    assert key not in keys.read_text()  # only the hash is stored
    caller = KeyStore.from_file(keys).authenticate([("authorization", f"Bearer {key}")])
    assert caller.tenant == "acme" and caller.scopes == {"score", "index"}
    assert tomllib.loads(keys.read_text())["keys"][0]["name"] == "acme"
    bad = leadgw("keys", "create", "--tenant", "acme", "--scopes", "fly")
    assert bad.returncode == 2 and "fly" in bad.stderr
    bad = leadgw("keys", "create", "--tenant", "acme corp", "--keys-file", str(keys))
    assert bad.returncode == 2 and "tenant 'acme corp' has characters outside" in bad.stderr
    assert len(tomllib.loads(keys.read_text())["keys"]) == 1


@pytest.mark.parametrize("scopes", ["", ",", " , "])
def test_keys_create_refuses_a_key_with_no_scopes(tmp_path: Path, scopes: str) -> None:
    # It printed a key (and appended its entry) that could call nothing.
    keys = tmp_path / "keys.toml"
    done = leadgw(
        "keys", "create", "--tenant", "acme", "--scopes", scopes, "--keys-file", str(keys)
    )
    assert done.returncode == 2
    assert done.stderr == (
        "leadgw keys: --scopes names no scope; known: score, summarize, index, admin\n"
    )
    assert done.stdout == "" and not keys.exists()


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("", "is empty"),
        ("127.0.0.1:", "has no port after its ':'"),  # was port 443, quietly
        ("127.0.0.1:99999", "has port '99999', not a number from 1 to 65535"),
        ("http://127.0.0.1:50051", "is a URL; leave out its scheme"),
    ],
)
@pytest.mark.parametrize("command", ["score", "models", "summarize", "index"])
def test_a_malformed_address_is_refused_before_connecting(
    tmp_path: Path, command: str, address: str, problem: str
) -> None:
    # An empty one was a gRPC "UNKNOWN ... target uri is not valid" after grpc core log lines.
    notes = tmp_path / "notes.jsonl"
    notes.write_text(
        '{"note_id": "n1", "lead_id": "lead-1", "kind": "call", "text": "Called.", '
        '"created_at": "2025-05-01T10:00:00+00:00"}\n'
    )
    given = {"score": str(EXAMPLE), "summarize": "lead-1", "index": str(notes), "models": None}
    args = [command] if given[command] is None else [command, given[command]]
    done = leadgw(*args, "--address", address, "--timeout", "2")
    assert done.returncode == 2
    assert done.stderr == (
        f"leadgw {command}: --address {address!r} {problem}; give the gateway's host:port, "
        "e.g. 127.0.0.1:50051\n"
    )
    assert done.stdout == ""


def test_score_sends_typed_columns_and_mixed_ones_lead_by_lead(
    shared_gateway, tmp_path: Path
) -> None:
    """A file whose features each have one type goes column-wise; one mixing text and numbers in
    a feature can only go lead by lead, and the server names the lead at fault."""
    leads = list(read_leads(str(EXAMPLE)))
    columns = lead_codec.leads_to_columns(leads)
    assert columns is not None and list(columns.lead_ids) == [lead.lead_id for lead in leads]
    by_column = leadgw("score", str(EXAMPLE), "--address", shared_gateway.address, "--json")
    assert by_column.returncode == 0, by_column.stderr
    assert {json.loads(line)["lead_id"] for line in by_column.stdout.splitlines()} == {
        lead.lead_id for lead in leads
    }

    lines = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
    lines.append({"lead_id": "m-1", "features": {"channel": "web", "age": "sixty"}})
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert lead_codec.leads_to_columns(list(read_leads(str(mixed)))) is None
    refused = leadgw("score", str(mixed), "--address", shared_gateway.address)
    assert refused.returncode == 1
    assert "lead 'm-1': feature 'age' must be a number, got str 'sixty'" in refused.stderr


def test_score_refuses_a_feature_that_is_not_a_value(shared_gateway, tmp_path: Path) -> None:
    nested = tmp_path / "nested.jsonl"
    nested.write_text(
        '{"lead_id": "x", "features": {"channel": "web"}}\n'
        '{"lead_id": "y", "features": {"channel": "web", "age": [61]}}\n'
    )
    done = leadgw("score", str(nested), "--address", shared_gateway.address)
    assert done.returncode == 2
    assert "nested.jsonl:2: feature 'age' must be a number, a string, true, false or null" in (
        done.stderr
    )


def write_jsonl(path: Path, leads: list[LeadInput]) -> Path:
    """The leads as the JSON Lines file `leadgw score` reads, one lead a line."""
    path.write_text(
        "\n".join(
            json.dumps({"lead_id": lead.lead_id, "features": lead.features}) for lead in leads
        )
    )
    return path


def test_score_a_file_of_several_requests_ranks_it_whole(shared_gateway, tmp_path: Path) -> None:
    leads = sample_leads(2_500, seed=31)
    big = write_jsonl(tmp_path / "big.jsonl", leads)
    done = leadgw("score", str(big), "--address", shared_gateway.address, "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["lead_id"] for r in rows) == sorted(lead.lead_id for lead in leads)
    assert [r["rank"] for r in rows] == list(range(1, 2_501))
    probabilities = [r["probability"] for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)

    # A bad lead in the second request: the first request's leads were scored, and it says so.
    bad = dict(leads[1_700].features, age=400.0)
    lines = big.read_text().splitlines()
    lines[1_700] = json.dumps({"lead_id": leads[1_700].lead_id, "features": bad})
    big.write_text("\n".join(lines))
    refused = leadgw("score", str(big), "--address", shared_gateway.address)
    assert refused.returncode == 1
    assert f"lead '{leads[1_700].lead_id}': feature 'age' is 400" in refused.stderr
    assert "(after 1000 of 2500 leads)" in refused.stderr


def test_score_stops_quietly_when_its_reader_goes_away(shared_gateway, tmp_path: Path) -> None:
    """`leadgw score big.jsonl | head`: no traceback when the pipe closes early."""
    leads = sample_leads(3_000, seed=32)
    big = write_jsonl(tmp_path / "big.jsonl", leads)
    command = [sys.executable, "-m", "gateway", "score", str(big), "--json"]
    reader = subprocess.Popen(
        [*command, "--address", shared_gateway.address],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = json.loads(reader.stdout.readline())
    reader.stdout.close()  # like head after its lines
    stderr = reader.stderr.read()
    assert reader.wait(timeout=60) == 1
    assert first["rank"] == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_score_reads_a_csv_row_that_ends_early_as_missing_values(
    shared_gateway, tmp_path: Path
) -> None:
    """Cells a row leaves out are missing, as empty ones are (it was an AttributeError); a row
    with more values than columns is refused naming its line (its last values were dropped)."""
    short = tmp_path / "LEADS.CSV"  # the suffix in capitals is CSV too
    short.write_text(
        "lead_id,age,channel,investable_assets\na-1,61,referral,900000\na-2,35,cold_list\n"
    )
    done = leadgw("score", str(short), "--address", shared_gateway.address, "--json")
    assert done.returncode == 0, done.stderr
    assert {json.loads(line)["lead_id"] for line in done.stdout.splitlines()} == {"a-1", "a-2"}

    long = tmp_path / "long.csv"
    long.write_text("lead_id,age,channel\na-1,61,referral\na-2,35,New York, NY\n")
    refused = leadgw("score", str(long), "--address", shared_gateway.address)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"leadgw score: {long}:3: more values than columns"


def test_score_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"lead_id": "x", "features": {"city": "Münster"}}\n'.encode("latin-1"))
    done = leadgw("score", str(latin1), "--address", "127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr.startswith(f"leadgw score: {latin1}: not utf-8 text"), done.stderr


def test_score_refuses_a_negative_reasons_count_before_calling(tmp_path: Path) -> None:
    # It was a ValueError traceback from the request's uint32 field.
    done = leadgw("score", str(EXAMPLE), "--address", "127.0.0.1:9", "--reasons", "-1")
    assert done.returncode == 2
    assert "--reasons: must be 0 or more, not -1" in done.stderr
    assert "Traceback" not in done.stderr


def test_keys_create_names_a_keys_file_it_cannot_append_to(tmp_path: Path) -> None:
    for unwritable in (tmp_path / "no-such-folder" / "keys.toml", tmp_path):
        done = leadgw("keys", "create", "--tenant", "acme", "--keys-file", str(unwritable))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"leadgw keys: cannot append to {unwritable}: ")
        assert "Traceback" not in done.stderr
        # A key whose hash no file holds could never be used: it is not shown.
        assert "API key" not in done.stdout
