"""`kiln status` prints what the dashboard shows: a multi-arch index row carries the sum of its
platform images (issue #14: it printed 0.0 MB)."""

from __future__ import annotations

import argparse

from cli import commands


class OneBuild:
    def __init__(self, detail):
        self.detail = detail

    def get(self, path):
        assert path == "/builds/b1"
        return self.detail


DETAIL = {
    "build": {"build_id": "b1", "package": "demo", "build_number": 3, "status": "succeeded"},
    "steps": [],
    "images": [
        {"target": "api", "platform": "linux/amd64", "size_bytes": 40_000_000},
        {"target": "api", "platform": "linux/arm64", "size_bytes": 38_000_000},
        {"target": "api", "platform": "multi-arch", "size_bytes": None, "platforms_size_bytes": 78_000_000},
    ],
}


def test_status_shows_the_index_as_the_sum_of_its_platform_images(capsys):
    code = commands.status(OneBuild(DETAIL), argparse.Namespace(build="b1", json=False))
    out = capsys.readouterr().out
    assert code == 0
    assert "image api linux/amd64 40.0 MB" in out
    assert "image api multi-arch 78.0 MB (sum of its platform images)" in out
