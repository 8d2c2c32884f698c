"""CDEvents v0.5.1: Kiln's pipeline translated for outside CD tools, and validated before it leaves.

- `translate(envelope) -> list[dict]`: the CDEvents one Kiln event stands for (often none).
- `validate(cdevent)`: raises `InvalidCDEvent` unless it matches the vendored v0.5.1 schema.
- `routing_key(cdevent)`: the key on `kiln.cdevents` (the CDEvents type without its version).
"""

from services.reporter.cdevents.translate import routing_key, translate
from services.reporter.cdevents.validate import InvalidCDEvent, validate

__all__ = ["InvalidCDEvent", "routing_key", "translate", "validate"]
