"""shared/bus/stage.py: the one stage lifecycle (started, finished with status, detail, error, tail)."""

from __future__ import annotations

import pytest

from shared.bus.stage import LOG_TAIL_LINES, MAX_ERROR_CHARS, StageFailed, finish_stage, stage
from shared.events import StageFinished, StageStarted
from shared.logging import REDACT


class Recorder:
    build_id = "build-1"
    package = "demo"

    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


def test_a_body_that_returns_succeeds_with_its_detail_and_where():
    ctx = Recorder()
    with stage(ctx, "scan", target="api", platform="linux/amd64") as run:
        run.detail["digest"] = "sha256:x"
    started, finished = ctx.events
    assert started == StageStarted(stage="scan", target="api", platform="linux/amd64")
    assert isinstance(finished, StageFinished)
    assert (finished.status, finished.detail, finished.error) == ("succeeded", {"digest": "sha256:x"}, None)
    assert (finished.target, finished.platform) == ("api", "linux/amd64")


def test_fail_cancel_and_skip_set_the_status_and_the_verdict_goes_out_before_it():
    ctx = Recorder()
    with stage(ctx, "image") as run:
        run.fail("boom", log_tail=[f"line {i}" for i in range(80)])
        run.emit_with_verdict(StageStarted(stage="push"))  # any event: it goes just before
    assert [type(e) for e in ctx.events] == [StageStarted, StageStarted, StageFinished]
    finished = ctx.events[-1]
    assert finished.status == "failed" and finished.error == "boom"
    assert len(finished.log_tail) == LOG_TAIL_LINES and finished.log_tail[-1] == "line 79"
    for mark, status in ((lambda r: r.cancelled("user"), "cancelled"), (lambda r: r.skip("why"), "skipped")):
        ctx = Recorder()
        with stage(ctx, "push") as run:
            mark(run)
        assert ctx.events[-1].status == status


def test_stage_failed_ends_the_stage_and_is_raised_on_unless_told_otherwise():
    ctx = Recorder()
    with pytest.raises(StageFailed) as raised, stage(ctx, "config"):
        raise StageFailed("x" * (MAX_ERROR_CHARS + 100), {"missing": ["a"]})
    finished = ctx.events[-1]
    assert finished.status == "failed" and finished.detail == {"missing": ["a"]}
    assert len(finished.error) <= MAX_ERROR_CHARS and raised.value.stage == "config"
    assert raised.value.error == finished.error
    ctx = Recorder()
    with stage(ctx, "config", reraise=False):
        raise StageFailed("quiet")
    assert ctx.events[-1].error == "quiet"


def test_an_unexpected_exception_escapes_without_a_finished_event_unless_listed():
    """The bus retries it, and the retry re-emits the same derived ids: no failed verdict first."""
    ctx = Recorder()
    with pytest.raises(OSError), stage(ctx, "push"):
        raise OSError("registry away")
    assert [type(e) for e in ctx.events] == [StageStarted]
    ctx = Recorder()
    with pytest.raises(StageFailed) as raised, stage(ctx, "compile", fail_on=(Exception,)):
        raise OSError("disk")
    assert ctx.events[-1].error == "unexpected OSError: disk"
    assert isinstance(raised.value.__cause__, OSError)


def test_errors_are_redacted_and_names_come_from_the_stage_specs():
    REDACT.add("hunter2-secret")
    ctx = Recorder()
    with stage(ctx, "deploy") as run:
        run.fail("login with hunter2-secret failed")
    assert "hunter2-secret" not in ctx.events[-1].error
    with pytest.raises(ValueError, match="unknown stage"):
        finish_stage(Recorder(), "sign", "skipped")
    ctx = Recorder()
    finish_stage(ctx, "push", "skipped", target="api", platform="linux/arm64")
    assert ctx.events == [StageFinished(stage="push", status="skipped", target="api", platform="linux/arm64")]
