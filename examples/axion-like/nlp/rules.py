"""The `rules` engine: keyword rules, first match wins, with a confidence from the words matched."""

from __future__ import annotations

import re

NAME = "rules"
RULES = (
    ("greet", ("hello", "hi", "hey", "morning")),
    ("balance", ("balance", "credit", "owe")),
    ("stop", ("stop", "unsubscribe", "cancel")),
    ("human", ("agent", "human", "person")),
)
REPLIES = {
    "greet": "Hello! How can I help?",
    "balance": "Your balance is on its way by SMS.",
    "stop": "You will get no more messages.",
    "human": "Connecting you to a person.",
    "unknown": "Sorry, I did not get that. Say 'agent' to talk to a person.",
}
_WORD = re.compile(r"[a-z']+")


def classify(text: str) -> tuple[str, float]:
    words = set(_WORD.findall(text.lower()))
    for intent, keywords in RULES:
        hits = len(words & set(keywords))
        if hits:
            return intent, round(min(1.0, 0.6 + 0.2 * hits), 2)
    return "unknown", 0.0


def reply(intent: str) -> str:
    return REPLIES.get(intent, REPLIES["unknown"])
