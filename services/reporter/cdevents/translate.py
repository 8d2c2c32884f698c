"""Kiln events -> CDEvents v0.5.1 (https://cdevents.dev/docs/).

| Kiln event               | CDEvents                                            |
|--------------------------|-----------------------------------------------------|
| build.requested          | pipelinerun.queued                                  |
| build.waiting            | pipelinerun.queued (held back; build.requested queues it again) |
| stage.started (first)    | pipelinerun.started (shared.stages.FIRST_STAGE) + taskrun.started |
| stage.started (other)    | taskrun.started                                     |
| stage.finished           | taskrun.finished (outcome success/failure/cancel)   |
| stage.finished, succeeded, of a stage with `cdevents` | those types, about the image in its `detail` |
| build.finished           | pipelinerun.finished                                |
| image.pushed             | artifact.packaged + artifact.published (one image)  |
| deploy.completed         | service.deployed, one per deployed image            |

The table is `TRANSLATIONS` below: one function per Kiln event model. Every type it may emit is
granted to the reporter's broker user by shared.bus.topology.cdevents_types (a unit test checks).

Ids are derived from the Kiln event id, so a redelivered event yields the same CDEvents ids and
a consumer can deduplicate. The pipeline run's id is the build id; a task run's id is
`<build id>/<stage>[/<target>][/<platform>]`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from shared.events import (
    BuildFinished,
    BuildRequested,
    BuildWaiting,
    DeployCompleted,
    Envelope,
    Event,
    ImagePushed,
    RollbackRequested,
    StageFinished,
    StageStarted,
)
from shared.stages import STAGES, StageSpec

SPEC_VERSION = "0.5.1"
TYPE_PREFIX = "dev.cdevents."
TYPE_VERSION = "0.3.0"
_ID_NAMESPACE = uuid.UUID("0b8f5a3e-6d0c-4a8e-8f7e-4f1d2c3b5a69")
_OUTCOMES = {"succeeded": "success", "failed": "failure", "cancelled": "cancel", "skipped": "success"}

Out = list[tuple[str, str, dict[str, Any]]]  # (type, subject id, content)


class Context:
    """What every translation needs besides the event."""

    def __init__(self, envelope: Envelope, build_url: str, stages: tuple[StageSpec, ...]) -> None:
        self.envelope = envelope
        self.build_url = build_url
        self.stages = {spec.name: spec for spec in stages}
        self.first_stage = stages[0].name
        self.pipeline = {"pipelineName": envelope.package or "kiln", "uri": build_url}
        self.run_ref = {"id": envelope.buildid, "source": "/kiln"}


def translate(
    envelope: Envelope, *, build_url: str, stages: tuple[StageSpec, ...] = STAGES
) -> list[dict[str, Any]]:
    """`build_url` is the gateway's page of this build (a URI: the schemas require one)."""
    event = envelope.event()
    translation = TRANSLATIONS.get(type(event))
    out = translation(event, Context(envelope, build_url, stages)) if translation else []
    return [
        _cdevent(envelope, index, cd_type, subject_id, content)
        for index, (cd_type, subject_id, content) in enumerate(out)
    ]


def _build_requested(event: BuildRequested, c: Context) -> Out:
    return [("pipelinerun.queued", c.envelope.buildid, c.pipeline)]


def _build_waiting(event: BuildWaiting, c: Context) -> Out:
    # Held back by its concurrency group: queued from the subscriber's view, and the same run
    # (build id) is queued again by its build.requested when a slot frees.
    return [("pipelinerun.queued", c.envelope.buildid, c.pipeline)]


def _rollback_requested(event: RollbackRequested, c: Context) -> Out:
    # A rollback run starts at deploy: no first stage (config) starts it, so it starts here.
    return [
        ("pipelinerun.queued", c.envelope.buildid, c.pipeline),
        ("pipelinerun.started", c.envelope.buildid, c.pipeline),
    ]


def _stage_started(event: StageStarted, c: Context) -> Out:
    out: Out = []
    if event.stage == c.first_stage:
        out.append(("pipelinerun.started", c.envelope.buildid, c.pipeline))
    task = {"taskName": event.stage, "uri": c.build_url, "pipelineRun": c.run_ref}
    out.append(("taskrun.started", _task_id(c.envelope.buildid, event), task))
    return out


def _stage_finished(event: StageFinished, c: Context) -> Out:
    task = {
        "taskName": event.stage,
        "uri": c.build_url,
        "pipelineRun": c.run_ref,
        "outcome": _OUTCOMES.get(event.status, "error"),
    }
    if event.error:
        task["errors"] = event.error
    out: Out = [("taskrun.finished", _task_id(c.envelope.buildid, event), task)]
    spec = c.stages.get(event.stage)
    if spec and spec.cdevents and event.status == "succeeded":
        out += _stage_artifact_events(spec, event.detail or {})
    return out


def _stage_artifact_events(spec: StageSpec, detail: dict[str, Any]) -> Out:
    """The types a succeeded stage stands for (its spec's `cdevents`), about the image its
    `detail` names (repository, digest, tag; a signature for artifact.signed). A detail without
    an image names no artifact, so nothing is claimed."""
    repository, digest = detail.get("repository"), detail.get("digest")
    if not (isinstance(repository, str) and isinstance(digest, str) and repository and digest):
        return []
    artifact = image_purl(repository, digest, str(detail.get("tag") or ""))
    out: Out = []
    for cd_type in spec.cdevents:
        content = ARTIFACT_CONTENT.get(cd_type, lambda d: {})(detail)
        if content is not None:
            out.append((cd_type, artifact, content))
    return out


# A stage-declared CDEvents type -> its subject content from the stage's detail (None: the detail
# lacks what the schema requires, so the event is not emitted rather than emitted invalid).
ARTIFACT_CONTENT: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "artifact.signed": lambda d: {"signature": d["signature"]} if d.get("signature") else None,
    "artifact.published": lambda d: {},
}


def _build_finished(event: BuildFinished, c: Context) -> Out:
    finished = {**c.pipeline, "outcome": _OUTCOMES[event.status]}
    if event.error:
        finished["errors"] = event.error
    return [("pipelinerun.finished", c.envelope.buildid, finished)]


def _image_pushed(event: ImagePushed, c: Context) -> Out:
    artifact = image_purl(event.repository, event.digest, event.tag)
    change = {"change": {"id": c.envelope.buildid, "source": "/kiln"}}
    return [("artifact.packaged", artifact, change), ("artifact.published", artifact, {})]


def _deploy_completed(event: DeployCompleted, c: Context) -> Out:
    return [
        (
            "service.deployed",
            image.service,
            {"environment": {"id": event.release}, "artifactId": image.reference},
        )
        for image in event.images
    ]


TRANSLATIONS: dict[type[Event], Callable[[Any, Context], Out]] = {
    BuildRequested: _build_requested,
    BuildWaiting: _build_waiting,
    RollbackRequested: _rollback_requested,
    StageStarted: _stage_started,
    StageFinished: _stage_finished,
    BuildFinished: _build_finished,
    ImagePushed: _image_pushed,
    DeployCompleted: _deploy_completed,
}


def routing_key(cdevent: dict[str, Any]) -> str:
    """`dev.cdevents.taskrun.finished.0.3.0` -> `taskrun.finished`."""
    cd_type = cdevent["context"]["type"].removeprefix(TYPE_PREFIX)
    return cd_type.rsplit(".", 3)[0]


def image_purl(repository: str, digest: str, tag: str) -> str:
    """The package URL of an OCI image (purl spec, type `oci`)."""
    registry, _, path = repository.partition("/")
    name = path.rsplit("/", 1)[-1] if path else registry
    return f"pkg:oci/{name}@{quote(digest, safe='')}?repository_url={quote(repository, safe='')}&tag={tag}"


def _task_id(build_id: str, event: StageStarted | StageFinished) -> str:
    parts = [build_id, event.stage, event.target or "", event.platform or ""]
    return "/".join(part for part in parts if part)


def _cdevent(
    envelope: Envelope, index: int, cd_type: str, subject_id: str, content: dict[str, Any]
) -> dict[str, Any]:
    full_type = f"{TYPE_PREFIX}{cd_type}.{TYPE_VERSION}"
    return {
        "context": {
            "specversion": SPEC_VERSION,
            "id": str(uuid.uuid5(_ID_NAMESPACE, f"{envelope.id}/{index}")),
            "source": envelope.source,
            "type": full_type,
            "timestamp": envelope.time.isoformat().replace("+00:00", "Z"),
        },
        "subject": {"id": subject_id, "source": envelope.source, "content": content},
    }
