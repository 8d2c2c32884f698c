"""Service `webhook`: HTTP on $PORT (default 8080). GET /healthz, GET /status, POST /push.
Run: python3 -m webhook.server"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.app_config import load_app_config
from core.checks import Check, run_checks
from core.runtime import is_compiled, load_service_config, log
from core.text import checksum, slugify
from webhook.payload import parse_push

SERVICE = "webhook"
# The platform's own config (config/app.yaml, the sections the operator gives this service) is
# overridden by DEMO_<SECTION>_<OPTION> variables: core/app_config.py.
APP_PREFIX = "DEMO"


def self_checks() -> list[Check]:
    github = json.dumps({"ref": "refs/heads/feature/New_UI", "after": "abc"}).encode()
    bitbucket = json.dumps(
        {"push": {"changes": [{"new": {"name": "main", "target": {"hash": "def"}}}]}}
    ).encode()
    return [
        Check("core.text.slugify", lambda: slugify("Hello, World!"), "hello-world"),
        Check("core.text.checksum", lambda: checksum(b"")[:12], "e3b0c44298fc"),
        Check("webhook.payload.github", lambda: parse_push(github)["slug"], "feature-new-ui"),
        Check("webhook.payload.bitbucket", lambda: parse_push(bitbucket)["commit"], "def"),
    ]


def status() -> dict:
    return {
        "service": SERVICE,
        "compiled": is_compiled(),
        "tests": run_checks(self_checks()),
        # which sections and options it runs with, never their values (a password is one)
        "app_config": {name: sorted(options) for name, options in load_app_config(APP_PREFIX).items()},
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif self.path == "/status":
            self._json(200, status())
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/push":
            self._json(404, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            self._json(202, parse_push(self.rfile.read(length)))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._json(400, {"error": f"unreadable push payload: {exc}"})

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log(SERVICE, format % args)


def main() -> int:
    config = load_service_config()
    port = int(os.environ.get("PORT") or config.get("services", {}).get(SERVICE, {}).get("port") or 8080)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)

    def stop(_signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app_config = load_app_config(APP_PREFIX)
    log(SERVICE, f"listening on :{port}; app config sections: {', '.join(sorted(app_config)) or 'none'}")
    server.serve_forever()
    server.server_close()
    log(SERVICE, "stopped on signal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
