"""Service `go` (tier minimal): POST /links {"url"} -> {"code"}; GET /go/<code> redirects.
Run: python3 -m links.server"""

from __future__ import annotations

from core import jsonio
from core.checks import Check
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from links.codes import checked_target, decode, encode
from storage.records import RecordStore

SERVICE = "go"
PORT = 8083


class Links:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def create(self, request: Request) -> Response:
        body = jsonio.loads(request.body or b"{}")
        url = checked_target(str(body.get("url", "")) if isinstance(body, dict) else "")
        code = encode(self.store.count("link") + 1000)
        self.store.put("link", code, {"url": url})
        return json_response(201, {"code": code, "path": f"/go/{code}"})

    def follow(self, request: Request) -> Response:
        code = request.path.removeprefix("/go/")
        decode(code)  # a malformed code is a 400, not a lookup
        found = self.store.get("link", code)
        if found is None:
            return json_response(404, {"error": f"no link {code}"})
        return Response(302, b"", "text/plain", (("Location", found["url"]),))


def self_checks() -> list[Check]:
    links = Links(RecordStore())
    made = links.create(Request("POST", "/links", {}, b'{"url": "https://example.com/a"}'))
    code = jsonio.loads(made.body)["code"]

    def hostile() -> int:
        try:
            links.create(Request("POST", "/links", {}, b'{"url": "javascript:alert(1)"}'))
        except ValueError:
            return 400
        return 201

    return [
        Check("links.codes round trip", lambda: decode(encode(123456789)), 123456789),
        Check("links redirect", lambda: links.follow(Request("GET", f"/go/{code}", {})).status, 302),
        Check("links refuses javascript:", hostile, 400),
    ]


def main() -> int:
    links = Links(RecordStore())
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("POST", "/links"): links.create, ("GET", "/go/"): links.follow},
    )


if __name__ == "__main__":
    raise SystemExit(main())
