"""A dispute's parties through the whole platform: sealed on the log, masked in the APIs,
revealed only by a recorded break-glass read, and gone everywhere once erased, with every
figure unchanged. Real broker, real PostgreSQL, kcat for the raw log."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from events.envelope import Role
from events.log import consumer, end_offsets, partitions_of
from events.topics import DEAD_LETTERS, INCIDENTS
from projections import sla
from projections.matters import FiveHave
from projections.replay import diff, replay
from tests.e2e.test_publish_and_read import KCAT_FOR_TANSU
from tests.residents import a_resident
from tests.stack import RunningStack, command, wait_until

#: the residents this module's disputes name: unusual enough that no other text contains them
RESIDENTS = [a_resident(), a_resident()]
SECRETS = [s for resident in RESIDENTS for s in resident]


def a_dispute(grid: str) -> dict[str, Any]:
    (first, first_phone), (second, second_phone) = RESIDENTS
    return {
        "event_id": str(uuid.uuid4()), "event_type": "dispute.reported", "schema_version": 1,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(), "grid": grid,
        "aggregate_id": f"dsp-{uuid.uuid4().hex[:12]}", "aggregate_seq": 0,
        "payload": {"kind": "neighbour",
                    "parties": [{"name": first, "phone": first_phone},
                                {"name": second, "phone": second_phone}],
                    "summary": f"{first}（电话 {first_phone}）与{second}因宅基地边界争执。",
                    "location": {"description": "马场村 3 组"}}}


def kcat(stack: RunningStack, topic: str) -> str:
    """Every record of a topic, as any Kafka client reads it. Partition by partition from
    offset 0 to the end we measure: kcat's `-e` asks Tansu for the logical end, which it
    cannot answer over the old protocol kcat has to speak to it (KCAT_FOR_TANSU)."""
    kafka = consumer(stack.info["kafka_bootstrap"])
    try:
        ends = end_offsets(kafka, partitions_of(kafka, [topic]))
    finally:
        kafka.close()
    records = []
    for tp, end in sorted(ends.items()):
        if end == 0:
            continue
        read = subprocess.run(
            ["kcat", "-b", stack.info["kafka_bootstrap"], *KCAT_FOR_TANSU, "-C", "-t", topic,
             "-p", str(tp.partition), "-o", "0", "-c", str(end), "-q", "-f", "%s\\n"],
            capture_output=True, timeout=60)
        assert read.returncode == 0, read.stderr.decode()
        # other tests' poison records are not UTF-8: a name in UTF-8 still reads as itself
        records.append(read.stdout.decode("utf-8", errors="replace"))
    assert records, f"nothing on {topic}"
    return "".join(records)


def plaintext_in(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def reported(stack: RunningStack) -> dict[str, Any]:
    grid = f"{random.randint(100000, 999999)}/101/001/01"  # noqa: S311
    dispute = a_dispute(grid)
    mediator = stack.token(Role.mediator, grid)
    with stack.ingest(mediator) as phone:
        answer = phone.post("/v1/events", json=dispute)
        assert answer.status_code == 201, answer.text
        assert phone.post("/v1/events", json=dispute).json() == answer.json()  # a retry
    wait_until(lambda: stack.sql("select 1 from five_have where incident_id = %s",
                                 dispute["aggregate_id"]), what="the dispute in the chain")
    with stack.ingest(mediator) as phone:
        mediated = command(phone, dispute["aggregate_id"],
                           {"type": "mediate", "outcome": "succeeded"})
        assert mediated.status_code == 200, mediated.text
    # the archive is a projector of its own: the tests read its rows, so it must hold them
    stack.archived(INCIDENTS.name)
    return dispute


def figures(stack: RunningStack, dispute: dict[str, Any]) -> dict[str, Any]:
    """The chain and the rates of the dispute's grid, as a supervisor reads them."""
    grid, incident_id = dispute["grid"], dispute["aggregate_id"]
    with stack.query(stack.token(Role.supervisor, grid)) as api:
        chain = api.get(f"/v1/incidents/{incident_id}").json()
        rates = api.get("/v1/rates", params={
            "place": grid, "period": str(datetime.now(sla.LOCAL).year)}).json()
    chain.pop("watermark"), rates.pop("watermark", None)
    return {"chain": {k: v for k, v in chain.items() if k != "timeline"}, "rates": rates,
            "timeline": [e["event_id"] for e in chain["timeline"]]}


def test_a_dispute_is_masked_revealed_by_break_glass_and_erased_leaving_figures_unchanged(
        stack: RunningStack, reported: dict[str, Any]) -> None:
    grid, incident_id = reported["grid"], reported["aggregate_id"]
    (first, first_phone), (second, second_phone) = RESIDENTS
    path = f"/v1/incidents/{incident_id}"
    wait_until(lambda: stack.sql("select 1 from five_have where incident_id = %s and"
                                 " stage = 'resolved'", incident_id), what="the mediation")

    # on the log itself (kcat), in the archive and the chain's timeline: ciphertext only
    assert plaintext_in(kcat(stack, "gridgov.incidents")) == []
    assert plaintext_in(str(stack.sql("select convert_from(body, 'UTF8') from archive"
                                      " where aggregate_id = %s", incident_id))) == []

    # a grid worker reads the matter masked, and may not break the glass
    with stack.query(stack.token(Role.worker, grid)) as worker:
        shown = worker.get(path)
        assert shown.status_code == 200, shown.text
        assert plaintext_in(shown.text) == []
        parties = shown.json()["timeline"][0]["payload"]["parties"]
        assert parties == [{"name": first[0] + "**", "phone": first_phone[:3] + "****"
                            + first_phone[-4:]},
                           {"name": second[0] + "**", "phone": second_phone[:3] + "****"
                            + second_phone[-4:]}]
        assert "某某" in shown.json()["timeline"][0]["payload"]["summary"]
        refused = worker.get(path, params={"reveal": "personal", "reason": "想看看"})
        assert refused.status_code == 403, refused.text
        event = worker.get(f"/v1/events/{reported['event_id']}")
        assert event.status_code == 200 and plaintext_in(event.text) == []
        assert plaintext_in(worker.get(f"/v1/places/{grid}/events").text) == []

    # the mediator breaks the glass, with a reason: recorded first, then shown
    mediator_id = f"mediator-{uuid.uuid4().hex[:8]}"
    with stack.query(stack.token(Role.mediator, grid, sub=mediator_id)) as mediator:
        assert mediator.get(path, params={"reveal": "personal"}).status_code == 422
        revealed = mediator.get(path, params={"reveal": "personal",
                                              "reason": f"调解需电话联系{first}"})
        assert revealed.status_code == 200, revealed.text
        parties = revealed.json()["timeline"][0]["payload"]["parties"]
        assert parties == [{"name": first, "phone": first_phone},
                           {"name": second, "phone": second_phone}]
    auditor = stack.query(stack.token(Role.auditor, grid.split("/")[0]))
    glass = wait_until(lambda: [e for e in auditor.get(f"/v1/audit/history/{incident_id}").json()
                                .get("events", []) if e["event_type"]
                                == "audit.personal_data_revealed"], what="the break-glass event")
    assert glass[0]["actor"] == {"id": mediator_id, "role": "mediator"}
    assert glass[0]["event"]["payload"]["reason"] == "调解需电话联系某某"  # no name in the log
    assert len(glass[0]["event"]["payload"]["persons"]) == 2
    assert plaintext_in(auditor.get(f"/v1/audit/history/{incident_id}").text) == []

    before = figures(stack, reported)

    # erase both: one through the API, one with the CLI; only an admin may
    erasure = {"grid": grid, "name": first, "phone": first_phone, "reason": "本人申请，工单 117"}
    with stack.query(stack.token(Role.supervisor, grid)) as supervisor:
        assert supervisor.post("/v1/persons/erasures", json=erasure).status_code == 403
    with stack.query(stack.token(Role.admin, "*")) as admin:
        erased = admin.post("/v1/persons/erasures", json=erasure)
        assert erased.status_code == 200, erased.text
        assert admin.post("/v1/persons/erasures", json=erasure).status_code == 404
    cli = subprocess.run(
        [sys.executable, "-m", "services.cli", "person", "erase", "--grid", grid, "--name",
         second, "--phone", second_phone, "--reason", "本人申请，工单 118"],
        capture_output=True, timeout=60, env={**stack.env,
                                               "GRIDGOV_DATABASE_URL": stack.info["database_url"],
                                               "GRIDGOV_KAFKA_BOOTSTRAP":
                                                   stack.info["kafka_bootstrap"]})
    assert cli.returncode == 0, cli.stderr.decode()[-2000:]
    person = erased.json()["person"]
    wait_until(lambda: auditor.get(f"/v1/audit/history/{person}").status_code == 200,
               what="the erasure event in the archive")
    recorded = auditor.get(f"/v1/audit/history/{person}").json()["events"][0]
    assert recorded["event_type"] == "audit.person_erased"
    assert plaintext_in(str(recorded)) == []

    # afterwards: nobody, not even by break-glass, sees them; the figures are as they were
    with stack.query(stack.token(Role.mediator, grid)) as mediator:
        after = mediator.get(path, params={"reveal": "personal", "reason": "复查"})
        assert after.status_code == 200 and plaintext_in(after.text) == []
        assert after.json()["timeline"][0]["payload"]["parties"] == [
            {"name": "〔已删除〕", "phone": "〔已删除〕"}] * 2
        assert plaintext_in(mediator.get(f"/v1/events/{reported['event_id']}").text) == []
    assert plaintext_in(auditor.get(f"/v1/audit/history/{incident_id}").text) == []
    assert figures(stack, reported) == before
    for topic in ("gridgov.incidents", "gridgov.audit"):
        assert plaintext_in(kcat(stack, topic)) == []

    # a rebuild from offset 0 holds no plaintext and diffs empty against the live model
    url, bootstrap = stack.info["database_url"], stack.info["kafka_bootstrap"]
    asyncio.run(replay(FiveHave(), bootstrap=bootstrap, database_url=url,
                       schema="personal_five_have"))
    found = asyncio.run(diff(FiveHave(), bootstrap=bootstrap, database_url=url,
                             shadow="personal_five_have"))
    assert all(t.empty for t in found), [t for t in found if not t.empty]
    with psycopg.connect(url) as conn:
        rebuilt = conn.execute("select convert_from(body, 'UTF8') from"
                               " personal_five_have.incident_timeline where incident_id = %s",
                               [incident_id]).fetchall()
    assert rebuilt and plaintext_in(str(rebuilt)) == []


def test_no_service_log_names_a_resident(stack: RunningStack, reported: dict[str, Any]) -> None:
    """After the stack handled these residents (ingest, reads, break-glass, erasure), no log
    line of any of its processes holds their names or phones."""
    with stack.ingest(stack.token(Role.mediator, reported["grid"])) as phone:
        sealed = {"person": "p-" + "0" * 32, "key": str(uuid.uuid4()), "sealed": "A" * 40}
        forged = a_dispute(reported["grid"])
        forged["payload"]["parties"][0]["name"] = sealed
        assert phone.post("/v1/events", json=forged).status_code == 422
        bad = a_dispute(reported["grid"])
        bad["payload"]["parties"][0]["phone"] = "not a phone " + RESIDENTS[0][1]
        answer = phone.post("/v1/events", json=bad)
        assert answer.status_code == 422 and plaintext_in(answer.text) == []
    logs = sorted((stack.home / "logs").glob("*.log")) + [stack.home / "stack.out"]
    assert len(logs) > 5
    for log in logs:
        assert plaintext_in(log.read_text(encoding="utf-8", errors="replace")) == [], log.name
    for url in stack.info["metrics_urls"].values():
        assert plaintext_in(httpx.get(url, timeout=10).text) == [], url


def test_a_dispute_parked_as_a_dead_letter_is_ciphertext_there_too(
        stack: RunningStack, reported: dict[str, Any]) -> None:
    """The dead-letter topic keeps a poison record's bytes untouched. The log carries a
    dispute's parties sealed, so a copy of its record that another client garbles and writes
    back is parked with no name or phone in it."""
    from kafka import KafkaProducer

    (body,), = stack.sql("select body from archive where event_id = %s", reported["event_id"])
    poison = bytes(body) + b"}"  # one byte too many: not JSON any more
    producer = KafkaProducer(bootstrap_servers=stack.info["kafka_bootstrap"], acks="all")
    producer.send(INCIDENTS.name, key=reported["aggregate_id"].encode(), value=poison
                  ).get(timeout=10)
    producer.close()
    dead = consumer(stack.info["kafka_bootstrap"])
    dead.assign(partitions_of(dead, [DEAD_LETTERS.name]))
    dead.seek_to_beginning()
    parked: list[bytes] = []

    def ours() -> bool:
        for records in dead.poll(timeout_ms=200).values():
            parked.extend(r.value for r in records if r.value == poison)
        return bool(parked)

    try:
        wait_until(ours, what="the garbled dispute in the dead-letter topic")
    finally:
        dead.close()
    assert reported["event_id"].encode() in parked[0]
    assert plaintext_in(parked[0].decode("utf-8", errors="replace")) == []
    assert plaintext_in(kcat(stack, DEAD_LETTERS.name)) == []
