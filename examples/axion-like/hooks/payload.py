"""The parts of a GitHub- or Bitbucket-style push body the platform acts on."""

from __future__ import annotations

import re

from core import jsonio

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def parse_push(body: bytes) -> dict:
    """{"branch", "commit", "slug"}; ValueError on a body of neither shape."""
    try:
        payload = jsonio.loads(body)
        if "ref" in payload:  # GitHub
            branch, commit = payload["ref"].removeprefix("refs/heads/"), payload.get("after", "")
        else:  # Bitbucket
            change = payload["push"]["changes"][0]["new"]
            branch, commit = change["name"], change["target"]["hash"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"unreadable push payload: {type(exc).__name__} {exc}") from None
    return {"branch": branch, "commit": commit, "slug": _NOT_SLUG.sub("-", branch.lower()).strip("-")}
