"""The events (`tracker/events.py`): every registered type survives the trip through the log's
JSON and back, whatever its values; unknown types are refused, unknown fields ignored.

An event's `data` in the log is exactly its fields as JSON (SPEC §3), so `event_from(type,
json.loads(event.to_json()))` must give the same event back, by the fast path (exactly the
fields) and by the slow one (older data with fewer fields, newer with more).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tracker import events
from tracker.events import REGISTRY, Event, event_from

# One value per annotation used by the events, none of them a field's default.
SAMPLE: dict[str, Any] = {
    "str": "x-value",
    "str | None": "y-value",
    "int": 41,
    "int | None": 42,
    "float": 1.25,
    "float | None": 2.5,
    "bool": True,
    "bool | None": False,
    "list[str]": ["one", "two"],
    "dict[str, str]": {"code": "BuildJobExitNonZero", "message": "failed"},
}

HOSTILE_STRINGS = [
    "",
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
    "\x1b[2J\x9b31m",  # clear the screen; a C1 CSI
    "line\nbreak\r\n\tand\x00nul",
    "\u2028\u2029",  # JavaScript's line separators
    "é漢字🚀",
    '"quoted" \\ back\\slash',
    "x" * 100_000,
]
HOSTILE_INTS = [0, -1, 2**63 - 1, -(2**63)]

TERMINAL = {
    "PushRejected",
    "DeploymentSucceeded",
    "DeploymentFailed",
    "DeploymentSuperseded",
    "MonitorTimedOut",
}


def fields_of(cls: type[Event]) -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(cls))


def sample(cls: type[Event], text: str | None = None, number: int | None = None) -> Event:
    """An instance with every field set, to `text`/`number` where given."""
    values: dict[str, Any] = {}
    for f in fields_of(cls):
        kind = str(f.type)
        value = SAMPLE[kind]
        if text is not None and kind.startswith("str"):
            value = text
        elif number is not None and kind.startswith("int"):
            value = number
        elif text is not None and kind == "list[str]":
            value = [text, text]
        elif text is not None and kind == "dict[str, str]":
            value = {"code": text, "message": text}
        values[f.name] = value
    return cls(**values)


def round_trip(event: Event) -> Event:
    return event_from(event.TYPE, json.loads(event.to_json()))


TYPES = sorted(REGISTRY)


def test_every_event_class_is_registered_under_its_name() -> None:
    classes = {
        name: obj
        for name, obj in vars(events).items()
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
    }
    assert set(classes) == set(REGISTRY)
    for name, cls in classes.items():
        assert REGISTRY[name] is cls and cls.TYPE == name


def test_the_terminal_events_are_the_verdicts() -> None:
    assert {name for name, cls in REGISTRY.items() if cls.TERMINAL} == TERMINAL


@pytest.mark.parametrize("type_name", TYPES)
def test_every_type_round_trips_with_every_field_set(type_name: str) -> None:
    event = sample(REGISTRY[type_name])
    back = round_trip(event)
    assert type(back) is type(event) and back == event
    assert back.to_data() == event.to_data()


@pytest.mark.parametrize("type_name", TYPES)
def test_every_type_round_trips_with_its_defaults(type_name: str) -> None:
    cls = REGISTRY[type_name]
    required = {
        f.name: SAMPLE[str(f.type)]
        for f in fields_of(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    event = cls(**required)
    assert round_trip(event) == event


@pytest.mark.parametrize("type_name", TYPES)
def test_the_data_is_exactly_the_fields_as_sorted_json(type_name: str) -> None:
    event = sample(REGISTRY[type_name])
    text = event.to_json()
    assert json.loads(text) == event.to_data()
    assert list(json.loads(text)) == sorted(f.name for f in fields_of(type(event)))


@pytest.mark.parametrize("type_name", TYPES)
def test_older_data_without_the_defaulted_fields_still_reads(type_name: str) -> None:
    cls = REGISTRY[type_name]
    full = sample(cls).to_data()
    old = {
        f.name: full[f.name]
        for f in fields_of(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert event_from(type_name, old) == cls(**old)


@pytest.mark.parametrize("type_name", TYPES)
def test_newer_data_with_unknown_fields_reads_and_drops_them(type_name: str) -> None:
    event = sample(REGISTRY[type_name])
    newer = {**event.to_data(), "field_of_a_later_version": [1, 2, 3], "zz": None}
    back = event_from(type_name, newer)
    assert back == event
    assert "field_of_a_later_version" not in back.to_data()


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("text", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_hostile_strings_come_back_unchanged_and_the_json_stays_one_ascii_line(
    type_name: str, text: str
) -> None:
    event = sample(REGISTRY[type_name], text=text)
    line = event.to_json()
    assert line.isascii() and "\n" not in line and "\r" not in line
    assert round_trip(event) == event


@pytest.mark.parametrize("type_name", [t for t in TYPES if any(
    str(f.type).startswith("int") for f in dataclasses.fields(REGISTRY[t])
)])  # fmt: skip
@pytest.mark.parametrize("number", HOSTILE_INTS)
def test_integers_at_sqlites_limits_come_back_unchanged(type_name: str, number: int) -> None:
    event = sample(REGISTRY[type_name], number=number)
    assert round_trip(event) == event


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(KeyError):
        event_from("DeploymentExploded", {"sha": "a" * 40})
    with pytest.raises(KeyError):
        event_from("", {})


def test_data_missing_a_required_field_is_refused() -> None:
    with pytest.raises(TypeError):
        event_from("PushRecorded", {"branch": "main"})  # no sha


def test_events_are_frozen() -> None:
    event = sample(REGISTRY["PushRecorded"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.sha = "b" * 40  # type: ignore[attr-defined]


def test_mutable_defaults_are_not_shared_between_events() -> None:
    first = events.MonitorStarted(pid=1, host="h", policy="p")
    second = events.MonitorStarted(pid=2, host="h", policy="p")
    assert first.sources == [] and first.sources is not second.sources
    failed = events.DeploymentFailed(deployment_id=None)
    assert failed.reason == {} and failed.log_tail == []


def test_the_fast_path_builds_the_same_event_as_the_constructor() -> None:
    event = sample(REGISTRY["DeploymentPolled"])
    data = event.to_data()
    fast = event_from("DeploymentPolled", dict(data))  # exactly the fields: no __init__
    assert fast == type(event)(**data) and fast.to_json() == event.to_json()
