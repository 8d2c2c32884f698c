"""Service `ai` (tier ai, feature `ai`): POST /rank {"query", "documents"} -> the best matches.
Run: python3 -m ml.server"""

from __future__ import annotations

from core import jsonio
from core.checks import Check
from httpapi.server import Request, Response, json_response
from httpapi.service import run_service
from ml.accel import cpu_features, expected_availability
from ml.scoring import cosine, top_k, vectorise

SERVICE = "ai"
PORT = 8085


def rank(request: Request) -> Response:
    body = jsonio.loads(request.body or b"{}")
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise ValueError('POST /rank needs {"query": "...", "documents": ["..."]}')
    documents = [str(d) for d in body.get("documents", [])][:1000]
    return json_response(200, {"matches": top_k(body["query"], documents, int(body.get("k", 3)))})


def features(_request: Request) -> Response:
    return json_response(200, cpu_features())


def self_checks() -> list[Check]:
    docs = ["reset my password", "billing and invoices", "password expired again"]
    return [
        Check("ml.scoring top_k", lambda: [i for i, _ in top_k("password", docs, 2)], [0, 2]),
        Check("ml.scoring cosine", lambda: round(float(cosine(vectorise(["a b", "a b"])[0])[0, 1]), 6), 1.0),
        Check("ml.accel per platform", lambda: cpu_features()["available"], expected_availability()),
    ]


def main() -> int:
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("POST", "/rank"): rank, ("GET", "/cpu"): features},
    )


if __name__ == "__main__":
    raise SystemExit(main())
