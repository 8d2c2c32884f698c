"""Loads the configured intent engine by name: `nlp.<engine>` (CONVERSATION_ENGINE, default rules).

The import is computed on purpose: engines are plug-ins, chosen per deployment. Static analysis
cannot see it, so the service's factories must keep `nlp` explicitly; without it the service dies
at start-up with ModuleNotFoundError, which is what the image proof catches."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

ENGINES = "nlp"
DEFAULT_ENGINE = "rules"


def engine_name() -> str:
    name = os.environ.get("CONVERSATION_ENGINE", DEFAULT_ENGINE)
    if not name.isidentifier():
        raise ValueError(f"CONVERSATION_ENGINE must be a module name, not {name!r}")
    return name


def load_engine(name: str) -> ModuleType:
    engine = importlib.import_module(f"{ENGINES}.{name}")
    for needed in ("classify", "reply"):
        if not callable(getattr(engine, needed, None)):
            raise TypeError(f"intent engine {engine.__name__} has no {needed}()")
    return engine


def answer(engine: ModuleType, text: str) -> dict:
    intent, confidence = engine.classify(text)
    return {"intent": intent, "confidence": confidence, "reply": engine.reply(intent), "engine": engine.NAME}
