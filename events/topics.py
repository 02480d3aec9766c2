"""The topic catalog: one topic per aggregate family, keyed by aggregate id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    families: tuple[str, ...]  # event-type prefixes that live here
    key: str = "aggregate_id"


INCIDENTS = Topic("gridgov.incidents", ("incident", "dispute"))
PATROLS = Topic("gridgov.patrols", ("patrol",))
EVENT_TOPICS = (INCIDENTS, PATROLS)
DEAD_LETTERS = Topic("gridgov.deadletter", ())
INCIDENT_COMMANDS = Topic("gridgov.commands.incidents", ())  # the incident decider's input


def topic_for(event_type: str) -> Topic:
    family = event_type.split(".", 1)[0]
    for topic in EVENT_TOPICS:
        if family in topic.families:
            return topic
    raise KeyError(event_type)
