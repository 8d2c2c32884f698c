"""Live log lines: a batch of what a running stage printed, on the `kiln.logs` exchange.

Not part of the event catalogue (`registry.CATALOGUE`) on purpose. A batch is a view of a stage
while it runs: published transient and unconfirmed, dropped when nobody listens, never recorded
by the reporter, never the trigger of any work. The durable record of a stage's output is the
`log_tail` of its `stage.finished` / `image.failed` event. So `decode()` does not accept a batch;
`LogBatch.from_json` does.

The envelope has the CloudEvents 1.0 shape (structured JSON mode) so the same tools read it, with
the same `buildid` / `package` extensions as the catalogue's events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events.base import TYPE_PREFIX
from shared.events.envelope import InvalidEvent

LOG_LINES_TYPE = f"{TYPE_PREFIX}.log.lines.v1"


class LogLines(BaseModel):
    """The `data` of a batch: which stage (and image target/platform) printed what."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    stage: str
    target: str | None = None
    platform: str | None = None
    # 1, 2, 3 … per stage run: a gap means batches were lost (broker down, a slow reader).
    seq: int
    lines: tuple[str, ...]
    # Lines the publisher dropped just before this batch (its buffer was full, or a publish
    # failed); the first line of `lines` then says "[n lines dropped]" too.
    dropped: int = 0


class LogBatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str = LOG_LINES_TYPE
    subject: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    buildid: str
    package: str = ""
    data: LogLines

    @classmethod
    def new(cls, lines: LogLines, *, source: str, build_id: str, package: str = "") -> LogBatch:
        return cls(
            source=source if source.startswith("/") else f"/kiln/{source}",
            subject=build_id,
            buildid=build_id,
            package=package,
            data=lines,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, body: bytes) -> LogBatch:
        try:
            batch = cls.model_validate_json(body)
        except (ValidationError, ValueError) as exc:
            raise InvalidEvent(f"not a log batch: {exc}") from None
        if batch.type != LOG_LINES_TYPE:
            raise InvalidEvent(f"not a log batch: type {batch.type!r} (expected {LOG_LINES_TYPE!r})")
        return batch
