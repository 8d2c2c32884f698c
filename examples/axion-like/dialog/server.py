"""Service `conversation` (tier minimal): POST /say {"text"} -> intent and reply. The intent engine
is loaded at start-up, before the port opens. Run: python3 -m dialog.server"""

from __future__ import annotations

from core import jsonio
from core.checks import Check
from core.lifecycle import log
from dialog.engine import answer, engine_name, load_engine
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from messaging.bus import Bus

SERVICE = "conversation"
PORT = 8084


def main() -> int:
    engine = load_engine(engine_name())
    log(SERVICE, f"intent engine {engine.__name__}")
    bus = Bus()

    def say(request: Request) -> Response:
        body = jsonio.loads(request.body or b"{}")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError('POST /say needs {"text": "..."}')
        turn = answer(engine, text)
        bus.publish(f"conversation.{turn['intent']}", turn)
        return json_response(200, turn)

    def self_checks() -> list[Check]:
        return [
            Check("dialog greet", lambda: answer(engine, "Hello there")["intent"], "greet"),
            Check("dialog stop", lambda: answer(engine, "please UNSUBSCRIBE me")["intent"], "stop"),
            Check("dialog fallback", lambda: answer(engine, "qwerty")["confidence"], 0.0),
        ]

    return run_service(SERVICE, default_port=PORT, checks=self_checks, routes={("POST", "/say"): say})


if __name__ == "__main__":
    raise SystemExit(main())
