"""The watchdog's decision: which stage an open build waits on, and whether it is overdue."""

from __future__ import annotations

import datetime as dt

import pytest

from services.reporter.watchdog import OpenBuild, Step, deadlines, overdue
from shared.stages import STAGES

T0 = dt.datetime(2026, 12, 3, 12, 0, 0)
LIMITS = deadlines({})


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def done(stage, target="", platform="", start=0.0, end=1.0, status="succeeded"):
    return Step(stage, target, platform, status, at(start), at(end))


def running(stage, target="", platform="", start=0.0):
    return Step(stage, target, platform, "started", at(start), None)  # as the history writes it


def build(*steps, platforms=("linux/amd64", "linux/arm64")):
    return OpenBuild("b1", "demo", 1, T0, platforms, tuple(steps))


BUILD_WIDE = (done("config"), done("keys"), done("compile", end=10))


def test_a_build_nobody_picked_up_waits_on_the_compilers_queue_for_the_queue_wait_limit():
    """Not started is a queue wait (builds queue behind others), not a stalled run: it gets the
    queue wait limit (an hour by default), not the stage's deadline (config: 120 s)."""
    assert overdue(build(), at(121), LIMITS) is None
    timeout = overdue(build(), at(3601), LIMITS)
    assert timeout is not None and timeout.stage == "config" and not timeout.started
    assert timeout.error == (
        "timed out in config after 3601 s not started (queue wait limit 3600 s), "
        "waiting on kiln.compiler.builds"
    )
    assert overdue(build(), at(31), LIMITS, queue_wait_s=30) is not None


def test_a_running_stage_past_its_deadline_names_the_image_and_its_workers_queue():
    stalled = build(*BUILD_WIDE, running("image", "webhook", "linux/arm64", start=11))
    assert overdue(stalled, at(11 + 1800), LIMITS) is None
    timeout = overdue(stalled, at(11 + 1801), LIMITS)
    assert timeout is not None
    assert (timeout.stage, timeout.where, timeout.queue) == (
        "image",
        "webhook linux/arm64",
        "kiln.imager.arm64",
    )


def test_images_not_started_wait_on_each_platforms_queue():
    timeout = overdue(build(*BUILD_WIDE), at(10 + 3601), LIMITS)
    assert timeout is not None and timeout.stage == "image"
    assert timeout.queue == "kiln.imager.amd64 or kiln.imager.arm64"


def test_between_stages_the_first_missing_gate_stage_is_named_and_silence_counts_from_the_last_step():
    steps = (
        *BUILD_WIDE,
        done("image", "webhook", "linux/amd64", 11, 20),
        done("push", "webhook", "linux/amd64", 20, 21),
        done("attest", "webhook", "linux/amd64", 21, 25),
    )
    one = build(*steps, platforms=("linux/amd64",))
    assert overdue(one, at(25 + 15), LIMITS, queue_wait_s=15) is None
    timeout = overdue(one, at(25 + 16), LIMITS, queue_wait_s=15)
    assert timeout is not None
    assert (timeout.stage, timeout.where, timeout.queue) == (
        "scan",
        "webhook linux/amd64",
        "kiln.scanner.images",
    )
    assert timeout.silent_s == 16 and timeout.elapsed_s == 41


def test_optional_stages_are_never_waited_on():
    """audit, docs, topology and scaffold run only when a package asks: a build between its
    last attest and its deploy waits on deploy, not on audit."""
    steps = (
        *BUILD_WIDE,
        done("image", "w", "linux/amd64", 11, 20),
        done("push", "w", "linux/amd64", 20, 21),
        done("scan", "w", "linux/amd64", 21, 22),
        done("attest", "w", "linux/amd64", 21, 23),
    )
    timeout = overdue(build(*steps, platforms=("linux/amd64",)), at(23 + 3601), LIMITS)
    assert timeout is not None and timeout.stage == "deploy" and timeout.queue == "kiln.deployer.gate"
    assert {spec.name for spec in STAGES if spec.optional} == {"audit", "topology", "scaffold", "docs"}


def test_a_skipped_or_failed_image_is_not_waited_on_after_it():
    steps = (
        *BUILD_WIDE,
        done("image", "w", "linux/amd64", 11, 20),
        done("push", "w", "linux/amd64", 20, 21, "skipped"),
    )
    timeout = overdue(build(*steps, platforms=("linux/amd64",)), at(21 + 10_000), LIMITS)
    assert timeout is not None and timeout.stage == "deploy"  # never "scan" of an unpushed image


def test_operator_deadlines_override_the_spec_and_unknown_stages_are_refused():
    assert deadlines({"image": 60})["image"] == 60
    assert deadlines({})["compile"] == 1800
    with pytest.raises(ValueError, match="names no stage: imaging"):
        deadlines({"imaging": 60})


def test_a_rollback_run_waits_on_the_deployers_queue_not_the_compilers():
    """A rollback run (kiln rollback) starts at deploy: its config, compile and image stages never
    run, so a request nobody took is named as waiting on the deployer's gate queue."""
    rollback = OpenBuild("b2", "demo", 1, T0, ("linux/amd64",), (), starts_at="deploy")
    timeout = overdue(rollback, at(3601), LIMITS)
    assert timeout is not None and (timeout.stage, timeout.queue) == ("deploy", "kiln.deployer.gate")
    deploying = OpenBuild("b2", "demo", 1, T0, ("linux/amd64",), (running("deploy"),), starts_at="deploy")
    assert overdue(deploying, at(901), LIMITS).stage == "deploy"
    finished = (done("deploy"), done("verify"))
    assert (
        overdue(
            OpenBuild("b2", "demo", 1, T0, ("linux/amd64",), finished, starts_at="deploy"), at(7200), LIMITS
        )
        is None
    )


def test_the_rollback_stage_is_the_one_consuming_the_request():
    from services.reporter.watchdog import ROLLBACK_STAGE

    assert ROLLBACK_STAGE == "deploy"
