"""Kiln events -> CDEvents v0.5.1 (https://cdevents.dev/docs/).

| Kiln event               | CDEvents                                            |
|--------------------------|-----------------------------------------------------|
| build.requested          | pipelinerun.queued                                  |
| stage.started (config)   | pipelinerun.started (the first stage of every build) + taskrun.started |
| stage.started (other)    | taskrun.started                                     |
| stage.finished           | taskrun.finished (outcome success/failure/cancel)   |
| build.finished           | pipelinerun.finished                                |
| image.pushed             | artifact.packaged + artifact.published (one image)  |
| deploy.completed         | service.deployed, one per deployed image            |

Ids are derived from the Kiln event id, so a redelivered event yields the same CDEvents ids and
a consumer can deduplicate. The pipeline run's id is the build id; a task run's id is
`<build id>/<stage>[/<target>][/<platform>]`.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from shared.events import (
    BuildFinished,
    BuildRequested,
    DeployCompleted,
    Envelope,
    ImagePushed,
    StageFinished,
    StageStarted,
)

SPEC_VERSION = "0.5.1"
TYPE_PREFIX = "dev.cdevents."
TYPE_VERSION = "0.3.0"
FIRST_STAGE = "config"
_ID_NAMESPACE = uuid.UUID("0b8f5a3e-6d0c-4a8e-8f7e-4f1d2c3b5a69")
_OUTCOMES = {"succeeded": "success", "failed": "failure", "cancelled": "cancel", "skipped": "success"}


def translate(envelope: Envelope, *, build_url: str) -> list[dict[str, Any]]:
    """`build_url` is the gateway's page of this build (a URI: the schemas require one)."""
    event = envelope.event()
    out: list[tuple[str, str, dict[str, Any]]] = []  # (type, subject id, content)
    pipeline = {"pipelineName": envelope.package or "kiln", "uri": build_url}
    run_ref = {"id": envelope.buildid, "source": "/kiln"}
    if isinstance(event, BuildRequested):
        out.append(("pipelinerun.queued", envelope.buildid, pipeline))
    elif isinstance(event, StageStarted):
        if event.stage == FIRST_STAGE:
            out.append(("pipelinerun.started", envelope.buildid, pipeline))
        task = {"taskName": event.stage, "uri": build_url, "pipelineRun": run_ref}
        out.append(("taskrun.started", _task_id(envelope.buildid, event), task))
    elif isinstance(event, StageFinished):
        task = {
            "taskName": event.stage,
            "uri": build_url,
            "pipelineRun": run_ref,
            "outcome": _OUTCOMES.get(event.status, "error"),
        }
        if event.error:
            task["errors"] = event.error
        out.append(("taskrun.finished", _task_id(envelope.buildid, event), task))
    elif isinstance(event, BuildFinished):
        finished = {**pipeline, "outcome": _OUTCOMES[event.status]}
        if event.error:
            finished["errors"] = event.error
        out.append(("pipelinerun.finished", envelope.buildid, finished))
    elif isinstance(event, ImagePushed):
        artifact = image_purl(event.repository, event.digest, event.tag)
        out.append(("artifact.packaged", artifact, {"change": {"id": envelope.buildid, "source": "/kiln"}}))
        out.append(("artifact.published", artifact, {}))
    elif isinstance(event, DeployCompleted):
        for image in event.images:
            content = {"environment": {"id": event.release}, "artifactId": image.reference}
            out.append(("service.deployed", image.service, content))
    return [
        _cdevent(envelope, index, cd_type, subject_id, content)
        for index, (cd_type, subject_id, content) in enumerate(out)
    ]


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
