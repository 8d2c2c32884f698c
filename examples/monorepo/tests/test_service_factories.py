import json

import pytest

from report.render import render_table
from storage.store import BlobStore
from webhook.payload import parse_push
from webhook.server import status


def test_report_renders_a_grid_table():
    text = render_table("Build 42", [{"service": "webhook", "port": 8080}])
    assert text.splitlines()[0] == "Build 42 [build-42]"
    assert "| webhook   |   8080 |" in text


def test_blob_store_round_trip_and_corruption(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(b"hello")
    assert store.get(digest) == b"hello"
    assert store.digests() == [digest]
    (tmp_path / digest).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="corrupt"):
        store.get(digest)


def test_parse_push_reads_github_and_bitbucket():
    github = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    assert parse_push(github) == {"branch": "main", "commit": "abc", "slug": "main"}
    bitbucket = {"push": {"changes": [{"new": {"name": "develop", "target": {"hash": "d"}}}]}}
    assert parse_push(json.dumps(bitbucket).encode())["branch"] == "develop"


def test_webhook_status_self_checks_all_pass():
    body = status()
    assert body["service"] == "webhook"
    assert body["compiled"] is False
    assert body["tests"]["summary"]["pass_rate"] == 100.0
