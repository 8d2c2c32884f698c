"""Service `runtime` (tier full): POST /messages validates and stores a message, GET /messages
counts them; its self-checks reach into every factory it keeps. Run: python3 -m api.runtime"""

from __future__ import annotations

from auth.signing import check_token, issue_token, new_key
from core import jsonio
from core.checks import Check
from core.config import writable_dir
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from importers.contacts import from_xml
from messaging.bus import Bus
from ml.scoring import top_k
from models.schema import message_json
from rendering.charts import bar_chart, png_size
from rendering.pages import render_table
from storage.blobs import BlobStore
from storage.records import RecordStore

SERVICE = "runtime"
PORT = 8000


class Runtime:
    def __init__(self, blobs: BlobStore, records: RecordStore) -> None:
        self.blobs, self.records, self.bus = blobs, records, Bus()

    def post_message(self, request: Request) -> Response:
        message = message_json(request.body)
        digest = self.blobs.put(jsonio.dumps(message))
        self.records.put("message", digest, {"channel": message["channel"]})
        self.bus.publish(f"message.{message['channel']}", {"digest": digest})
        return json_response(201, {"digest": digest})

    def count_messages(self, _request: Request) -> Response:
        return json_response(200, {"messages": self.records.count("message")})


def self_checks() -> list[Check]:
    runtime = Runtime(BlobStore(writable_dir("RUNTIME_BLOBS", "runtime-blobs") / "checks"), RecordStore())
    body = b'{"channel": "web", "recipient": "u1", "body": "hi"}'
    key = new_key()
    return [
        Check(
            "runtime stores a message",
            lambda: runtime.post_message(Request("POST", "/m", {}, body)).status,
            201,
        ),
        Check("auth tokens", lambda: check_token(key, issue_token(key, "ops", 60)), "ops"),
        Check(
            "rendering pages+charts",
            lambda: ("<td>" in render_table("t", [{"a": 1}]), png_size(bar_chart({"a": 1}))),
            (True, (320, 120)),
        ),
        Check(
            "importers xml",
            lambda: len(from_xml(b"<c><contact><name>A</name><phone>+1555123</phone></contact></c>")[0]),
            1,
        ),
        Check("ml scoring", lambda: top_k("sms", ["web", "sms"], 1)[0][0], 1),
    ]


def main() -> int:
    root = writable_dir("RUNTIME_BLOBS", "runtime-blobs")
    runtime = Runtime(BlobStore(root / "messages"), RecordStore(root / "runtime.sqlite"))
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("POST", "/messages"): runtime.post_message, ("GET", "/messages"): runtime.count_messages},
    )


if __name__ == "__main__":
    raise SystemExit(main())
