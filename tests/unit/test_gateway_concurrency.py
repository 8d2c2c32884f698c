"""Concurrency groups, our own logic without I/O: who decides the policy (the operator only), what a
group is, what a held build announces, how the history and the CLI show it. The decisions on the
real database and broker are tests/integration/test_gateway_concurrency.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cli.progress import describe
from services.gateway.concurrency import (
    Admission,
    Policy,
    group_of,
    policy_reader,
    requested_id,
    superseded_reason,
    waiting_id,
)
from services.gateway.concurrency_admission import announcement
from services.gateway.settings import GatewaySettings
from services.reporter.projection import project
from shared.config import ConfigError, load_config
from shared.config.sections import ConcurrencyConfig
from shared.events import BuildRequested, BuildWaiting, Envelope
from shared.events.build import Source
from tests.unit.test_config_repository import OPERATOR, build, errors_of

NO_ENV: dict[str, str] = {}


def test_the_default_is_one_build_per_branch_queued():
    settings = GatewaySettings(amqp_url="amqp://x", database_url="mysql+pymysql://x/y")
    assert (settings.concurrency_limit, settings.concurrency_mode) == (1, "queue")


def with_section(config, **values):
    package = config.packages["demo"].model_copy(update={"concurrency": ConcurrencyConfig(**values)})
    return config.model_copy(update={"packages": {**config.packages, "demo": package}})


def test_a_packages_section_overrides_the_default_key_by_key():
    config = load_config(OPERATOR, NO_ENV)
    default = Policy(1, "queue")
    assert policy_reader(config, default)("demo") == default  # no section: the gateway's default
    assert policy_reader(with_section(config, mode="supersede"), default)("demo") == Policy(1, "supersede")
    assert policy_reader(with_section(config, limit=0), default)("demo") == Policy(0, "queue")
    assert policy_reader(with_section(config, limit=3, mode="supersede"), default)("demo") == Policy(
        3, "supersede"
    )
    assert policy_reader(None, default)("anything") == default


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("{limit: -1}", "packages.demo.concurrency.limit"),
        ("{mode: cancel}", "packages.demo.concurrency.mode"),
    ],
)
def test_a_bad_operator_section_is_refused_naming_the_key(tmp_path, section, path):
    text = OPERATOR.read_text().replace("  demo:\n", f"  demo:\n    concurrency: {section}\n", 1)
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as failure:
        load_config(config, NO_ENV)
    assert path in dict(failure.value.errors), failure.value.errors


def test_the_operator_sets_it_in_its_own_file(tmp_path):
    text = OPERATOR.read_text().replace(
        "  demo:\n", "  demo:\n    concurrency: {limit: 3, mode: supersede}\n", 1
    )
    config = tmp_path / "config.yaml"
    config.write_text(text)
    section = load_config(config, NO_ENV).package("demo").concurrency
    assert (section.limit, section.mode) == (3, "supersede")


def test_a_pushed_config_yaml_cannot_change_its_own_concurrency():
    """The attacker's branch asks for 100 parallel builds, or to supersede everyone else's."""
    for text in (
        "packages: {demo: {concurrency: {limit: 100}}}",
        "packages: {demo: {concurrency: {mode: queue}}}",
    ):
        errors = errors_of(text)
        assert errors["packages.demo.concurrency"].startswith("operator only"), errors
    assert build(None).package("demo").concurrency.limit is None  # the operator's (unset: default)


def test_a_group_is_package_and_branch_in_either_spelling():
    assert group_of("demo", "refs/heads/main") == group_of("demo", "main")
    assert group_of("demo", "refs/heads/main")[1] == "main"
    assert group_of("demo", "main") != group_of("other", "main")
    assert group_of("demo", "main") != group_of("demo", "develop")
    assert group_of("demo", "refs/tags/main") != group_of("demo", "main")  # a tag is its own group


def test_event_ids_are_the_same_whoever_publishes_them():
    build_id = str(uuid.uuid4())
    assert requested_id(build_id) == requested_id(build_id) != waiting_id(build_id)
    assert superseded_reason("b-2", 7) == "superseded by build b-2 (#7)"


def request(build_id: str, number: int = 2) -> Envelope:
    event = BuildRequested(package="demo", build_number=number, source=Source(ref="refs/heads/main"))
    return Envelope.new(
        event, source="gateway", build_id=build_id, package="demo", event_id=requested_id(build_id)
    )


def test_a_held_build_announces_build_waiting_with_what_it_waits_on():
    build_id, running = str(uuid.uuid4()), str(uuid.uuid4())
    envelope = request(build_id)
    assert announcement(envelope, Admission(build_id)) is envelope
    held = announcement(envelope, Admission(build_id, start=False, waiting_on=(running, 1), limit=1))
    assert (
        held.routing_key() == "build.waiting" and held.buildid == build_id and held.id == waiting_id(build_id)
    )
    event = held.event()
    assert isinstance(event, BuildWaiting) and (event.waiting_on, event.waiting_on_number) == (running, 1)
    assert event.build_number == 2 and event.source.ref == "refs/heads/main"
    line = describe("build.waiting", {"buildid": build_id, "data": held.data})
    assert f"#2 waiting for a slot behind build {running} (#1) (concurrency limit 1)" in line


def test_the_history_shows_a_held_build_queued_naming_its_blocker_until_released():
    build_id, running = str(uuid.uuid4()), str(uuid.uuid4())
    held = announcement(request(build_id), Admission(build_id, start=False, waiting_on=(running, 1), limit=1))
    run = project([held]).runs[build_id]
    assert run["status"] == "queued" and run["build_number"] == 2
    assert run["waiting_on"] == f"waiting for a slot (limit 1) behind build {running} (#1)"
    released = request(build_id).model_copy(update={"time": datetime.now(UTC) + timedelta(seconds=1)})
    assert project([held, released]).runs[build_id]["waiting_on"] == ""
