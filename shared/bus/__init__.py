"""The event bus on RabbitMQ: topology, confirmed publishing, consuming with retry and dead letters."""

from shared.bus.connection import Bus
from shared.bus.context import EventContext
from shared.bus.errors import PermanentError, TransientError
from shared.bus.idempotency import IdempotencyGuard, MemoryIdempotencyGuard, SqlIdempotencyGuard
from shared.bus.runner import run_service

__all__ = [
    "Bus",
    "EventContext",
    "IdempotencyGuard",
    "MemoryIdempotencyGuard",
    "PermanentError",
    "SqlIdempotencyGuard",
    "TransientError",
    "run_service",
]
