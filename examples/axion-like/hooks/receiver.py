"""Service `webhook` (tier minimal): POST /push with `X-Signature: sha256=...` of the body.
Run: python3 -m hooks.receiver"""

from __future__ import annotations

from auth.signing import new_key, sign, verify
from core.checks import Check
from hooks.payload import parse_push
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from messaging.bus import Bus

SERVICE = "webhook"
PORT = 8081
KEY = new_key()
BUS = Bus()


def receive(request: Request) -> Response:
    if not verify(KEY, request.body, request.headers.get("x-signature", "")):
        return json_response(401, {"error": "the body's X-Signature does not match"})
    push = parse_push(request.body)
    BUS.publish(f"push.{push['slug'] or 'unnamed'}", push)
    return json_response(202, push)


def self_checks() -> list[Check]:
    body = b'{"ref": "refs/heads/feature/New_UI", "after": "abc"}'
    signed = Request("POST", "/push", {}, body, {"x-signature": sign(KEY, body)})
    forged = Request("POST", "/push", {}, body, {"x-signature": "sha256=00"})
    return [
        Check("hooks.payload slug", lambda: parse_push(body)["slug"], "feature-new-ui"),
        Check("auth.signing accepts signed", lambda: receive(signed).status, 202),
        Check("auth.signing refuses forged", lambda: receive(forged).status, 401),
    ]


def main() -> int:
    return run_service(SERVICE, default_port=PORT, checks=self_checks, routes={("POST", "/push"): receive})


if __name__ == "__main__":
    raise SystemExit(main())
