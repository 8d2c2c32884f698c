"""A workflow definition is a table state -> {event: next state}; an instance is its state and history."""

from __future__ import annotations

from dataclasses import dataclass, field

ONBOARDING = {
    "new": {"verified": "verified", "rejected": "closed"},
    "verified": {"welcomed": "active"},
    "active": {"closed": "closed"},
    "closed": {},
}


@dataclass
class Instance:
    key: str
    state: str = "new"
    history: list[str] = field(default_factory=list)


def advance(definition: dict[str, dict[str, str]], instance: Instance, event: str) -> Instance:
    """The instance after `event`; ValueError when the event does not apply in its state."""
    transitions = definition.get(instance.state)
    if transitions is None:
        raise ValueError(f"state {instance.state!r} is not in the definition")
    if event not in transitions:
        raise ValueError(
            f"event {event!r} does not apply in state {instance.state!r} (expects {sorted(transitions)})"
        )
    return Instance(instance.key, transitions[event], [*instance.history, event])


def finished(definition: dict[str, dict[str, str]], instance: Instance) -> bool:
    return not definition.get(instance.state)
