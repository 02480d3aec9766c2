"""Residents' personal data (个人信息): marked in the event models, sealed per person on the log.

A field annotated `Personal(kind)` holds what identifies a resident (a dispute party's name or
phone). Apps send it as text; ingest seals it with AES-GCM under that person's own data key
before it reaches the log, so the log, the archive and every read model keep only ciphertext,
and deleting the person's key makes every copy unreadable without rewriting anything
(crypto-shredding). Readers see it masked (张**, 138****1234); unmasked only by break-glass.

A person is the record that holds the marked fields (a `Party`), identified within its grid by
a keyed HMAC of its normalised values: the same resident named in two disputes shares one key,
so one erasure reaches both, and the id itself says nothing to whoever lacks the key.
Everything here is pure: keys come in as arguments, nothing is read from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, get_args
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

Kind = Literal["name", "phone"]
PersonRef = Annotated[str, Field(pattern=r"^p-[0-9a-f]{32}$")]
#: what a reader sees where a person's data was erased: the key is gone, so is the text
ERASED = "〔已删除〕"
#: what free text says instead of a party's name or phone (the same words Open311 uses)
SOMEONE = "某某"


@dataclass(frozen=True)
class Personal:
    """Marks a field as a resident's personal data of this kind (in the JSON Schema too)."""

    kind: Kind

    def __get_pydantic_json_schema__(self, schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        shown = handler(schema)
        shown["x-personal"] = self.kind
        return shown


class Sealed(BaseModel):
    """A personal value as the log carries it: AES-GCM ciphertext under one person's key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    person: PersonRef
    key: UUID  # the data key's id in person_keys; gone once the person is erased
    sealed: Annotated[str, Field(min_length=38, max_length=1000, pattern=r"^[A-Za-z0-9_-]+$")]


M = TypeVar("M", bound=BaseModel)


def _marker(info: FieldInfo) -> Personal | None:
    found = [m for m in info.metadata if isinstance(m, Personal)]
    stack = [info.annotation]
    while stack and not found:  # `Annotated[..., Personal] | None` keeps it inside the union
        for arg in get_args(stack.pop()):
            found += [m for m in getattr(arg, "__metadata__", ()) if isinstance(m, Personal)]
            stack.append(arg)
    return found[0] if found else None


@cache
def marked(cls: type[BaseModel]) -> dict[str, Kind]:
    """The personal fields a model declares itself: field name -> kind."""
    return {name: m.kind for name, info in cls.model_fields.items()
            if (m := _marker(info)) is not None}


@cache
def carries_personal(cls: type[BaseModel]) -> bool:
    """Whether this model or any model nested in it declares personal fields."""
    if marked(cls):
        return True
    return any(issubclass(arg, BaseModel) and carries_personal(arg)
               for info in cls.model_fields.values() for arg in _classes(info.annotation))


def _classes(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    found = [annotation] if isinstance(annotation, type) else []
    return found + [c for a in args for c in _classes(a)]


def rewrite(model: M, person: Callable[[BaseModel], BaseModel],
            text: Callable[[str], str] = lambda s: s) -> M:
    """The model with each person record replaced by `person(record)` and every other free
    text by `text(value)`; the same object where nothing changed."""
    if marked(type(model)):
        return person(model)  # type: ignore[return-value]  # a record becomes its own kind
    changes: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        new = _rewritten(value, person, text)
        if new is not value:
            changes[name] = new
    return model.model_copy(update=changes) if changes else model


def _rewritten(value: Any, person: Callable[[BaseModel], BaseModel],
               text: Callable[[str], str]) -> Any:
    if isinstance(value, BaseModel):
        return rewrite(value, person, text)
    if isinstance(value, list):
        items = [_rewritten(v, person, text) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, str) and not isinstance(value, Enum):
        new = text(value)
        return value if new == value else new
    return value


def people(model: BaseModel) -> list[BaseModel]:
    """The person records inside a model, in order."""
    found: list[BaseModel] = []

    def keep(record: BaseModel) -> BaseModel:
        found.append(record)
        return record

    rewrite(model, keep)
    return found


def said_in(record: BaseModel) -> dict[str, tuple[Kind, Any]]:
    """A person record's personal fields that hold something: name -> (kind, value)."""
    return {name: (kind, v) for name, kind in marked(type(record)).items()
            if (v := getattr(record, name)) is not None}


def normalised(kind: Kind, text: str) -> str:
    """The form two spellings of one name or number share: no spaces, digits only, no +86."""
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def person_id(pseudonym_key: bytes, grid: str, said: dict[str, tuple[Kind, str]]) -> str:
    """A resident's stable id within a grid: a keyed HMAC, so it cannot be guessed back."""
    place = "/".join(grid.split("/")[:4])  # a building inside a grid is the same grid
    parts = [place, *(f"{kind}={normalised(kind, text)}" for kind, text in sorted(said.values()))]
    digest = hmac.new(pseudonym_key, "\n".join(parts).encode(), hashlib.sha256).digest()
    return f"p-{digest[:16].hex()}"


def seal(data_key: bytes, person: str, key_id: UUID, kind: Kind, text: str) -> Sealed:
    """AES-GCM with a synthetic nonce (an HMAC of key, context and text): a retried event
    seals to the same bytes, so its digest and the archive's duplicate check still hold;
    a nonce repeats only with its own plaintext, which is what makes that safe."""
    context = f"{person}|{kind}".encode()
    nonce_key = hmac.new(data_key, b"gridgov nonce", hashlib.sha256).digest()
    nonce = hmac.new(nonce_key, context + b"\x00" + text.encode(), hashlib.sha256).digest()[:12]
    box = nonce + AESGCM(data_key).encrypt(nonce, text.encode(), context)
    return Sealed(person=person, key=key_id,
                  sealed=base64.urlsafe_b64encode(box).rstrip(b"=").decode())


def unseal(data_key: bytes, sealed: Sealed, kind: Kind) -> str | None:
    """The text, or None if this key did not seal it (a key made after an erasure)."""
    box = base64.urlsafe_b64decode(sealed.sealed + "=" * (-len(sealed.sealed) % 4))
    try:
        return AESGCM(data_key).decrypt(box[:12], box[12:],
                                        f"{sealed.person}|{kind}".encode()).decode()
    except (InvalidTag, ValueError):
        return None


def mask(kind: Kind, text: str) -> str:
    """What a reader without break-glass sees: the surname, or a phone's prefix and last four."""
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 8 else "****"
    return f"{text[:1]}**"


def scrub(text: str, said: list[str]) -> str:
    """Free text with these names and numbers replaced, longest first."""
    for value in sorted((s for s in said if len(s) >= 2), key=len, reverse=True):
        text = text.replace(value, SOMEONE)
    return text


def sealed_fields(model: BaseModel) -> list[str]:
    """Personal fields already sealed: a client never sends ciphertext, only the server seals."""
    if not carries_personal(type(model)):
        return []
    return [name for record in people(model) for name, (_, v) in said_in(record).items()
            if isinstance(v, Sealed)]
