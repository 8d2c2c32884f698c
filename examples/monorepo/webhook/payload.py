"""Parse the parts of a push payload the example cares about."""

from __future__ import annotations

import json

from core.text import slugify


def parse_push(body: bytes) -> dict:
    """{"branch", "commit", "slug"} from a GitHub- or Bitbucket-style push body."""
    payload = json.loads(body)
    if "ref" in payload:  # GitHub
        branch = payload["ref"].removeprefix("refs/heads/")
        commit = payload.get("after", "")
    else:  # Bitbucket
        change = payload["push"]["changes"][0]["new"]
        branch, commit = change["name"], change["target"]["hash"]
    return {"branch": branch, "commit": commit, "slug": slugify(branch)}
