"""Unit tests of the reporter's logic with fakes: CDEvents translation/validation, batching under a
database outage, the report view, repository paths."""

from __future__ import annotations

import asyncio
import copy

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from services.reporter.batching import BatchingIngestor
from services.reporter.cdevents import InvalidCDEvent, translate, validate
from services.reporter.handlers import on_event_for_cdevents
from services.reporter.notify import repository_path
from shared.bus import EventContext, PermanentError
from shared.events import Envelope, RollbackRequested, StageStarted
from shared.report.view import human_duration, human_size, timeline
from tests.unit.samples import SAMPLES
from tests.unit.test_reporter_stream import full_build_stream

URL = "http://kiln.example/builds/b"


def envelopes():
    return [Envelope.new(s, source="test", build_id="b", package="demo") for s in SAMPLES]


def test_every_translation_of_the_catalogue_validates():
    produced = [c for e in envelopes() for c in translate(e, build_url=URL)]
    produced += translate(
        Envelope.new(StageStarted(stage="config"), source="compiler", build_id="b"), build_url=URL
    )
    assert {c["context"]["type"].split(".")[2] for c in produced} >= {"pipelinerun", "taskrun", "artifact"}
    for cdevent in produced:
        validate(cdevent)


def test_translation_ids_are_stable_for_a_redelivered_event():
    envelope = envelopes()[0]
    assert translate(envelope, build_url=URL) == translate(envelope, build_url=URL)


def test_an_invalid_cdevent_is_refused():
    cdevent = copy.deepcopy(translate(envelopes()[0], build_url=URL)[0])
    cdevent["subject"]["content"]["unexpected"] = True
    with pytest.raises(InvalidCDEvent, match="unexpected"):
        validate(cdevent)


class RecordingPublisher:
    def __init__(self):
        self.published = []

    async def publish(self, routing_key, cdevent):
        self.published.append((routing_key, cdevent))


def context(envelope: Envelope) -> EventContext:
    async def publish(_):
        pass

    return EventContext(envelope=envelope, consumer="test", source="reporter", _publish=publish,
                        _loop=asyncio.get_event_loop())  # fmt: skip


async def test_invalid_translation_goes_to_dead_letters_and_nothing_is_published():
    publisher = RecordingPublisher()
    envelope = full_build_stream("b")[0]
    with pytest.raises(PermanentError):  # the build page URL is not a URI: the schema refuses it
        await on_event_for_cdevents(envelope.event(), context(envelope), publisher=publisher,
                                    build_url=lambda b: "not a uri")  # fmt: skip
    assert publisher.published == []


async def test_batching_waits_out_a_database_outage_without_failing_anyone():
    calls = []

    def write(batch):
        calls.append(len(batch))
        if len(calls) <= 3:
            raise OperationalError("INSERT", {}, Exception("2003: Can't connect to MySQL server"))
        return len(batch)

    ingestor = BatchingIngestor(write, max_batch=10, max_wait_ms=5, retry_initial_s=0.01, retry_max_s=0.02)
    stream = full_build_stream("b")[:25]
    await asyncio.gather(*(ingestor.submit(e) for e in stream))
    await ingestor.close()
    assert ingestor.outage_retries == 3 and ingestor.written == 25 and calls[:4] == [10, 10, 10, 10]


async def test_batching_isolates_a_bad_event():
    bad = full_build_stream("b")[3]

    def write(batch):
        if bad.id in {e.id for e in batch}:
            raise IntegrityError("INSERT", {}, Exception("bad row"))
        return len(batch)

    ingestor = BatchingIngestor(write, max_batch=10, max_wait_ms=5)
    results = await asyncio.gather(*(ingestor.submit(e) for e in full_build_stream("b")[:10]),
                                   return_exceptions=True)  # fmt: skip
    await ingestor.close()
    assert [type(r).__name__ for r in results].count("PermanentError") == 1
    assert isinstance(results[3], PermanentError) and ingestor.written == 9


def test_report_helpers():
    assert human_size(57_000_000) == "57.0 MB" and human_size(None) == "-"
    assert human_duration(60_000) == "1 min 00 s" and human_duration(1500) == "1.5 s"
    assert repository_path("https://github.com/o/r.git") == "o/r"
    assert repository_path("git@bitbucket.org:ws/repo.git") == "ws/repo"
    assert repository_path("https://git.corp/scm/PROJ/mono.git") == "PROJ/mono"


def test_timeline_places_bars_on_the_build_axis():
    build = {"started_at": "2026-11-21T09:00:00", "requested_at": None}
    steps = [
        {"stage": "compile", "target": "", "platform": "", "status": "succeeded",
         "started_at": "2026-11-21T09:00:00", "finished_at": "2026-11-21T09:00:10", "duration_ms": 10_000},
        {"stage": "image", "target": "web", "platform": "linux/arm64", "status": "failed",
         "started_at": "2026-11-21T09:00:10", "finished_at": "2026-11-21T09:00:20", "duration_ms": 10_000},
    ]  # fmt: skip
    rows = timeline(build, steps)
    assert [(r["offset_pct"], r["width_pct"]) for r in rows] == [(0.0, 50.0), (50.0, 50.0)]
    assert rows[1]["label"] == "Image web arm64" and rows[1]["tone"] == "bad"


def test_a_rollback_run_is_queued_and_started_by_its_request():
    """It has no config stage to start it: rollback.requested stands for both."""
    rollback = next(e for e in envelopes() if e.type == RollbackRequested.ce_type())
    produced = translate(rollback, build_url=URL)
    assert [c["context"]["type"].split(".")[2:4] for c in produced] == [
        ["pipelinerun", "queued"],
        ["pipelinerun", "started"],
    ]
    assert {c["subject"]["id"] for c in produced} == {"b"}


def test_a_build_its_concurrency_group_holds_back_is_a_queued_pipeline_run():
    from shared.events import BuildWaiting

    held = Envelope.new(
        BuildWaiting(package="demo", build_number=7, waiting_on="b-6", waiting_on_number=6, limit=1),
        source="/kiln/gateway",
        build_id="b-7",
        package="demo",
    )
    (queued,) = translate(held, build_url=URL)
    validate(queued)
    assert queued["context"]["type"] == "dev.cdevents.pipelinerun.queued.0.3.0"
    assert queued["subject"]["id"] == "b-7"
