"""Service `sms` (tier minimal, feature `sms`): POST /send validates a message and queues it with
its segment count; POST /receipts takes the carrier's signed delivery receipts.
Run: python3 -m telephony.server"""

from __future__ import annotations

from auth.signing import new_key, sign, verify
from core.checks import Check
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from messaging.bus import Bus
from models.schema import message_json
from telephony.segments import encoding, segments

SERVICE = "sms"
PORT = 8087
KEY = new_key()
BUS = Bus()


def send(request: Request) -> Response:
    sms = message_json(request.body)
    if sms["channel"] != "sms":
        raise ValueError(f"the sms service sends channel sms, not {sms['channel']}")
    queued = {**sms, "segments": segments(sms["body"]), "encoding": encoding(sms["body"])}
    BUS.publish("sms.queued", queued)
    return json_response(202, queued)


def receipt(request: Request) -> Response:
    if not verify(KEY, request.body, request.headers.get("x-signature", "")):
        return json_response(401, {"error": "the receipt's X-Signature does not match"})
    BUS.publish("sms.delivered", {"size": len(request.body)})
    return json_response(204, {})


def self_checks() -> list[Check]:
    sent = b'{"channel": "sms", "recipient": "+15551234", "body": "Your code is 1234"}'
    signed = b'{"id": "r1", "status": "delivered"}'
    return [
        Check("telephony.segments gsm7", lambda: segments("x" * 161), 2),
        Check("telephony.segments ucs2", lambda: (encoding("Olá 😀"), segments("😀" * 36)), ("UCS-2", 2)),
        Check("sms send validates", lambda: send(Request("POST", "/send", {}, sent)).status, 202),
        Check("sms refuses bad input", lambda: _status_of(b'{"channel": "fax"}'), 400),
        Check(
            "sms receipts signed",
            lambda: (
                receipt(Request("POST", "/receipts", {}, signed, {"x-signature": sign(KEY, signed)})).status
            ),
            204,
        ),
    ]


def _status_of(body: bytes) -> int:
    try:
        return send(Request("POST", "/send", {}, body)).status
    except ValueError:
        return 400


def main() -> int:
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("POST", "/send"): send, ("POST", "/receipts"): receipt},
    )


if __name__ == "__main__":
    raise SystemExit(main())
