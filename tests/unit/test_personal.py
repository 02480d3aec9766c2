"""Residents' personal data: marked in the models, sealed per person, masked, unreadable once
the key is gone (events/personal.py, services/personal.py's pure half)."""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalog import event_from_json, example_event, json_schemas
from events.codec import canonical
from events.dispute import DisputeReported, Party
from events.envelope import SERVER_OWNED, Event
from events.incident import IncidentReportedV2
from events.personal import (
    Sealed,
    carries_personal,
    marked,
    mask,
    people,
    person_id,
    said_in,
    scrub,
    sealed_fields,
    unseal,
)
from events.personal import (
    seal as seal_value,
)
from services.admission import admit
from services.auth import Principal
from services.errors import Invalid
from services.personal import Keyring, _sealed
from services.settings import Settings

SETTINGS = Settings(token_secret="q7Hk2-vR9xLw4Zp8nB3mT6yC1sD5fG0jK" * 2,
                    master_key=secrets.token_urlsafe(32))
PERSON = "p-" + "0" * 32


def test_a_partys_name_and_phone_are_marked_personal_in_the_model_and_its_schema() -> None:
    assert marked(Party) == {"name": "name", "phone": "phone"}
    assert carries_personal(DisputeReported) and not carries_personal(IncidentReportedV2)
    party = json_schemas()["dispute.reported.v1"]["$defs"]["Party"]["properties"]
    assert party["name"]["x-personal"] == "name"
    assert "x-personal" in str(party["phone"])


@given(st.text(min_size=1, max_size=50))
def test_any_utf8_name_seals_and_opens_to_exactly_itself(name: str) -> None:
    key, key_id = os.urandom(32), uuid.uuid4()
    sealed = seal_value(key, PERSON, key_id, "name", name)
    assert unseal(key, sealed, "name") == name


def test_sealing_is_deterministic_so_a_retried_event_keeps_its_digest() -> None:
    key, key_id = os.urandom(32), uuid.uuid4()
    first = seal_value(key, PERSON, key_id, "name", "张建国")
    assert first == seal_value(key, PERSON, key_id, "name", "张建国")
    assert first != seal_value(key, PERSON, key_id, "name", "张建军")


def test_without_its_own_key_a_sealed_value_opens_to_nothing() -> None:
    key_id = uuid.uuid4()
    sealed = seal_value(os.urandom(32), PERSON, key_id, "phone", "13800001234")
    assert unseal(os.urandom(32), sealed, "phone") is None  # a key made after an erasure
    moved = sealed.model_copy(update={"person": "p-" + "1" * 32})
    assert unseal(os.urandom(32), moved, "phone") is None


def test_masks_keep_the_surname_and_a_phones_prefix_and_last_four() -> None:
    assert mask("name", "张三丰") == "张**"
    assert mask("name", "李四") == "李**"
    assert mask("phone", "13800001234") == "138****1234"
    assert mask("phone", "+86 138-0000-1234") == "861****1234"
    assert mask("phone", "12345") == "****"


def test_a_person_is_the_same_however_the_phone_is_written_and_differs_per_grid() -> None:
    key = os.urandom(32)
    one = person_id(key, "430382/101/003/07", said_in(Party(name="张 三", phone="13800001234")))
    assert one == person_id(key, "430382/101/003/07/3",
                            said_in(Party(name="张三", phone="+86 138 0000 1234")))
    assert one != person_id(key, "430382/101/003/08", said_in(Party(name="张三",
                                                                   phone="13800001234")))
    assert one != person_id(os.urandom(32), "430382/101/003/07",
                            said_in(Party(name="张三", phone="13800001234")))


def a_dispute() -> Event[DisputeReported]:
    body = example_event(DisputeReported)
    body["payload"] = {**body["payload"], "summary": "张三与李四因宅基地争执，张三电话 13800001234"}
    return event_from_json(canonical(body))  # type: ignore[arg-type]


def test_a_sealed_dispute_on_the_wire_holds_no_plaintext_and_still_decodes() -> None:
    keyring = Keyring(SETTINGS)
    event = a_dispute()
    keys = {keyring.person(event.grid, r): (uuid.uuid4(), os.urandom(32))
            for r in people(event.payload)}
    wire = canonical(_sealed(event, keyring, keys))
    for said in ("张三", "李四", "13800001234"):
        assert said.encode() not in wire
    back = event_from_json(wire)
    assert back.payload.summary == "某某与某某因宅基地争执，某某电话 某某"
    names = []
    for party in back.payload.parties:
        assert isinstance(party.name, Sealed)
        key_id, key = keys[party.name.person]
        assert party.name.key == key_id
        names.append(unseal(key, party.name, "name"))
    assert names == ["张三", "李四"]
    assert sealed_fields(back.payload) == ["name", "phone", "name"]


def test_a_client_cannot_send_ciphertext_for_the_server_to_trust() -> None:
    keyring, event = Keyring(SETTINGS), a_dispute()
    keys = {keyring.person(event.grid, r): (uuid.uuid4(), os.urandom(32))
            for r in people(event.payload)}
    body = orjson.loads(canonical(_sealed(event, keyring, keys)))
    for owned in SERVER_OWNED:
        body.pop(owned)
    caller = Principal.model_validate({"sub": "m-1", "role": "mediator", "scope": ["430382"],
                                       "iat": 0})
    with pytest.raises(Invalid, match="personal data"):
        admit(body, caller, now=datetime.now(UTC))


def test_free_text_says_someone_instead_of_the_longest_match_first() -> None:
    assert scrub("张三丰和张三", ["张三", "张三丰", "李"]) == "某某和某某"
