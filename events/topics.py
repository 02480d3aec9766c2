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
POINTS = Topic("gridgov.points", ("points",))  # keyed by account id (or a ranking's id)
AUDIT = Topic("gridgov.audit", ("audit",))  # the platform's own events (promotions)
EVENT_TOPICS = (INCIDENTS, PATROLS, POINTS, AUDIT)
DEAD_LETTERS = Topic("gridgov.deadletter", ())
INCIDENT_COMMANDS = Topic("gridgov.commands.incidents", ())  # the incident decider's input
POINTS_COMMANDS = Topic("gridgov.commands.points", ())  # the points decider's input
COMMAND_TOPICS = (INCIDENT_COMMANDS, POINTS_COMMANDS)


def topic_for(event_type: str) -> Topic:
    family = event_type.split(".", 1)[0]
    for topic in EVENT_TOPICS:
        if family in topic.families:
            return topic
    raise KeyError(event_type)
