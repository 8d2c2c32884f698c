"""shared.history on a real MariaDB: list, detail, diff, replay triggers, --skip-compile reuse."""

from __future__ import annotations

import uuid

import pytest

from services.reporter.history_writer import write_batch
from shared.history import (
    BuildNotFound,
    build_detail,
    build_diff,
    find_stage_trigger,
    latest_compiled_build,
    list_builds,
)
from tests.unit.test_reporter_stream import full_build_stream

pytestmark = pytest.mark.integration


def store(sessions, stream):
    with sessions() as session:
        write_batch(session, stream)
    return stream


def test_replay_triggers_follow_the_documented_mapping(sessions):
    build_id = str(uuid.uuid4())
    stream = store(sessions, full_build_stream(build_id))
    with sessions() as session:
        assert [e.id for e in find_stage_trigger(session, build_id, "compile")] == [stream[0].id]
        assert len(find_stage_trigger(session, build_id, "image")) == 4
        assert {e.type for e in find_stage_trigger(session, build_id, "scan")} == {"dev.kiln.image.pushed.v1"}
        assert [e.type for e in find_stage_trigger(session, build_id, "deploy")] == [
            "dev.kiln.compile.completed.v1"
        ]
        with pytest.raises(ValueError):
            find_stage_trigger(session, build_id, "nope")
    # a replayed event never becomes a trigger itself
    store(sessions, [stream[0].replayed()])
    with sessions() as session:
        assert [e.id for e in find_stage_trigger(session, build_id, "config")] == [stream[0].id]


def test_list_and_detail(sessions):
    build_id = str(uuid.uuid4())
    store(sessions, full_build_stream(build_id, fail_stage="image"))
    with sessions() as session:
        listed = list_builds(session, package="demo", status="failed", ref="refs/heads/main", limit=500)
        assert build_id in [b["build_id"] for b in listed["builds"]]
        detail = build_detail(session, build_id)
        assert build_detail(session, "nope") is None
    assert (
        detail["failure"]["stage"] == "image" and detail["failure"]["log_tail"][-1] == "error: exit status 1"
    )
    assert detail["compile"]["factories"] == ["core", "webhook"]
    assert [s["stage"] for s in detail["steps"]][:3] == ["config", "keys", "compile"]


def test_skip_compile_shows_the_latest_compiled_build(sessions):
    compiled = str(uuid.uuid4())
    store(sessions, full_build_stream(compiled))
    skipped = str(uuid.uuid4())
    later = [e.model_copy(update={"time": e.time.replace(hour=10)}) for e in full_build_stream(skipped,
             skip_compile=True)]  # fmt: skip
    store(sessions, later)
    with sessions() as session:
        assert latest_compiled_build(session, "demo") is not None
        detail = build_detail(session, skipped)
    assert detail["compile_from"] != skipped and detail["compile"]["factories"] == ["core", "webhook"]


def test_build_diff(sessions):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    store(sessions, full_build_stream(a, cves=("CVE-2026-0001", "CVE-2026-0002")))
    store(
        sessions,
        full_build_stream(
            b,
            notify=None,
            image_sizes={"webhook/linux/amd64": 40_000_000},
            cves=("CVE-2026-0002", "CVE-2026-0003"),
        ),
    )
    with sessions() as session:
        diff = build_diff(session, a, b)
        with pytest.raises(BuildNotFound):
            build_diff(session, a, "missing")
    size = next(i for i in diff["images"] if (i["target"], i["platform"]) == ("webhook", "linux/amd64"))
    assert size["size_bytes"]["delta"] == 40_000_000 - 57_000_000
    assert {v["id"] for v in diff["vulnerabilities"]["new"]} == {"CVE-2026-0003"}
    assert {v["id"] for v in diff["vulnerabilities"]["fixed"]} == {"CVE-2026-0001"}
    assert "options" in diff["config"] and diff["stages"][0]["stage"] == "config"
    assert diff["modules"] == {"changed": [], "newly_failing": [], "fixed": []}
