"""Audit events: what auditors and administrators did to the platform itself, in the log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Payload, Role
from events.incident import Text
from events.personal import PersonRef

#: the place of the platform's own events: no county has the code 000000, so only a '*'
#: (or '000000') scope covers it
PLATFORM = "000000/000/000/00"


class ProjectionPromoted(Payload, type="audit.projection_promoted",
                         emitted_by=frozenset({Role.admin, Role.auditor}), decided=True):
    """A rebuilt read model swapped in for the live one although they differed, and why.

    A rebuild identical to the live model is promoted without an event: nothing changed. A
    definition changed on purpose is recorded here with the differences it made.
    """

    projection: Annotated[str, Field(max_length=64)]
    reason: Text
    differences: dict[str, tuple[int, int]]  # table -> (rows only live, rows only rebuilt)
    watermark: dict[str, int]  # "topic:partition" -> next offset both models had applied


#: roles whose work needs a dispute party's name and phone: they may read them by break-glass
REVEALERS = frozenset({Role.grid_chief, Role.police, Role.mediator})


class PersonalDataRevealed(Payload, type="audit.personal_data_revealed", emitted_by=REVEALERS,
                           decided=True):
    """Break-glass: someone read residents' personal data unmasked, and said why.

    Recorded (acks=all) before the data is shown; its aggregate is the matter or event read,
    so an auditor finds it in that matter's history. It names persons by id, never by name.
    """

    read: Annotated[str, Field(max_length=300)]  # the API path that was read
    persons: Annotated[list[PersonRef], Field(max_length=100)]  # none: text an old producer wrote
    reason: Text


class PersonErased(Payload, type="audit.person_erased", emitted_by=frozenset({Role.admin}),
                   decided=True):
    """Crypto-shredding: a resident's data key was deleted, so every sealed copy of their data
    (log, archive, read models, backups) is unreadable from now on. No personal data here."""

    person: PersonRef
    keys: Annotated[int, Field(ge=1)]  # data keys deleted
    reason: Text


ProjectionPromoted.example = {
    "projection": "five_have", "reason": "满意率口径调整：4 分及以上计为满意",
    "differences": {"rate_facts": [12, 15]}, "watermark": {"gridgov.incidents:0": 1207},
}


#: a person's or a device's id; `user:<id>` or `device:<id>` is the aggregate id
Who = Annotated[str, Field(min_length=1, max_length=56, pattern=r"^[0-9A-Za-z_.:-]+$")]


class TokenIssued(Payload, type="audit.token_issued", emitted_by=frozenset({Role.admin}),
                  decided=True):
    """An administrator issued a bearer token: tokens are the only grant of a role and a
    scope, so this is every change of who may do what, and where."""

    sub: Who
    device: Who | None = None
    role: Role
    scope: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...]
    kid: Annotated[str, Field(min_length=1, max_length=64)]  # the key that signed it
    expires_at: AwareDatetime


TokenIssued.example = {
    "sub": "w-0001", "device": "phone-7f3a", "role": "worker", "scope": ["430382/101/003/07"],
    "kid": "2026-11", "expires_at": "2026-11-20T21:12:00+08:00",
}


class TokenRevoked(Payload, type="audit.token_revoked", emitted_by=frozenset({Role.admin}),
                   decided=True):
    """Every token of a user (a person leaving) or of a device (a lost phone) issued until
    `revoked_at` is refused from then on; tokens issued later are not."""

    kind: Literal["user", "device"]
    subject: Who
    revoked_at: AwareDatetime
    reason: Text


TokenRevoked.example = {
    "kind": "device", "subject": "phone-7f3a", "revoked_at": "2026-11-20T10:00:00+08:00",
    "reason": "手机遗失",
}
_PERSON = "p-3f1c9a0b7d2e4f6a8b9c0d1e2f3a4b5c"
PersonalDataRevealed.example = {"read": "/v1/incidents/dsp-430382-0001", "persons": [_PERSON],
                                "reason": "调解需电话联系当事人"}
PersonErased.example = {"person": _PERSON, "keys": 1, "reason": "本人申请删除，工单 2026-117"}
