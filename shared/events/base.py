"""The base every event model stands on.

An event model describes only the `data` of a CloudEvent. Its routing key and CloudEvents
`type` are derived from two class variables, so no name is ever typed twice.

Schema evolution is additive: a model ignores fields it does not know (a newer producer
may add fields without breaking older consumers), and a field may only be added with a
default. A change that is not additive gets a new model with `schema_version = 2`, published
under `dev.kiln.<subject>.<predicate>.v2` alongside v1 until every consumer has moved.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

TYPE_PREFIX = "dev.kiln"


class Event(BaseModel):
    """Data of one Kiln event. Frozen: an event is a fact (or a request) that never changes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subject: ClassVar[str]
    predicate: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def ce_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.subject}.{cls.predicate}.v{cls.schema_version}"

    @classmethod
    def base_routing_key(cls) -> str:
        return f"{cls.subject}.{cls.predicate}"

    def routing_key(self) -> str:
        """`<subject>.<predicate>`; per-platform requests override this to add `.<arch>`."""
        return self.base_routing_key()


class Model(BaseModel):
    """A frozen value nested inside event data."""

    model_config = ConfigDict(frozen=True, extra="ignore")
