"""The formats of event fields that become a path, a registry reference, a command line or a
template value on the receiving side.

The broker is not a trust boundary: anyone who can publish could forge any event, so a field is
checked where it is read, not where it was written. These are pydantic patterns, checked in
pydantic's Rust core when an event is decoded: a malformed event costs a regex, never I/O, and is
an InvalidEvent (permanent: dead-lettered with the field named, never retried). Checks against the
operator's config (is this the repository derived for that package?) are the receiving service's.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from shared.naming import (
    DIGEST_PATTERN,
    IMAGE_REFERENCE_PATTERN,
    NAME_PATTERN,
    REPOSITORY_PATTERN,
    TAG_PATTERN,
)

_HELP: dict[str, str] = {}


def _format(pattern: str, expected: str, max_length: int | None = None) -> StringConstraints:
    """A string constraint whose refusal says in words what was `expected`."""
    _HELP[pattern] = expected
    return StringConstraints(pattern=pattern, max_length=max_length)


def describe_format(pattern: str) -> str:
    """What a value that failed `pattern` should have looked like (for InvalidEvent messages)."""
    return f"is not {_HELP[pattern]}" if pattern in _HELP else f"does not match {pattern}"


_NAME_WORDS = "lowercase [a-z0-9] joined by single '.', '_', '__' or '-'"
_DIGEST_WORDS = "sha256:<64 lowercase hex>"
_IMAGE_WORDS = "[host[:port]/]path[:tag][@sha256:<hex>] without whitespace, newline or control characters"
# One directory name of a file:// store or an artifact path; never `.` or `..` (Rust regex has no
# lookarounds, hence the three alternatives).
_DIR = r"(?:[A-Za-z0-9_+=,-][A-Za-z0-9_.+=,-]*|\.[A-Za-z0-9_+=,-][A-Za-z0-9_.+=,-]*|\.\.[A-Za-z0-9_.+=,-]+)"

# Package, service (target) and version names: what image_repository() accepts as a component.
Name = Annotated[str, _format(NAME_PATTERN, f"a name: {_NAME_WORDS}", 63)]
# Tier names as config.yaml spells them (they name cache directories and a Dockerfile comment).
TierName = Annotated[str, _format(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$", "a tier name: [a-z0-9_-]", 63)]
# A factory's directory inside the artifact: one path component, never `.`, `..` or a separator.
FactoryDir = Annotated[
    str, _format(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", "one directory name (no '/', not '.' or '..')", 100)
]
Digest = Annotated[str, _format(DIGEST_PATTERN, f"a digest {_DIGEST_WORDS}")]
# "" where a model allowed an empty digest before (an artifact named only by its reference).
OptionalDigest = Annotated[str, _format(rf"^$|{DIGEST_PATTERN}", f"empty or a digest {_DIGEST_WORDS}")]
Tag = Annotated[str, _format(TAG_PATTERN, "a tag [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")]
Repository = Annotated[
    str, _format(REPOSITORY_PATTERN, f"a repository [host[:port]/]path, path {_NAME_WORDS} per '/'", 255)
]
# A pullable image reference; "" in plain-Dockerfile mode, where the Dockerfile names its own base.
BaseImage = Annotated[
    str, _format(rf"^$|{IMAGE_REFERENCE_PATTERN}", f"an image reference {_IMAGE_WORDS}", 510)
]
# What a deployment pins to: `repository@sha256:<hex>` (or `repository:tag` before a digest exists).
ImageReference = Annotated[str, _format(IMAGE_REFERENCE_PATTERN, f"an image reference {_IMAGE_WORDS}", 510)]
# A file inside the artifact (plain-Dockerfile mode): relative, no `.`/`..` segment.
DockerfilePath = Annotated[
    str, _format(rf"^(?:{_DIR}/)*{_DIR}$", "a relative path without '.' or '..' segments", 255)
]
# `<registry repository>@sha256:<hex>` or `file:///<dir>@sha256:<hex>` (shared/artifacts.py).
ArtifactReference = Annotated[
    str,
    _format(
        rf"^(?:file://(?:/{_DIR})+|{REPOSITORY_PATTERN[1:-1]})@{DIGEST_PATTERN[1:]}",
        "an artifact reference <registry repository>@sha256:<hex> or file:///<dir>@sha256:<hex>",
        1024,
    ),
]
# A git commit id (sha-1 or sha-256), possibly abbreviated; "" when unknown.
Commit = Annotated[str, _format(r"^[0-9a-f]{0,64}$", "a commit id (lowercase hex)")]
# A requirements hash as the imager writes it (hex, truncated sha256).
HexHash = Annotated[str, _format(r"^[0-9a-f]{8,64}$", "a hex hash")]
# `/path?query` for the health probe: no quote, backslash, space or control character, because
# the path is written into the image's HEALTHCHECK line.
HealthPath = Annotated[
    str, _format(r"^/[A-Za-z0-9._~%/?=&+:@!,;-]*$", "a URL path /... without quotes or whitespace", 200)
]
# One word of a command line (JSON-encoded into CMD): any text but control characters.
CommandWord = Annotated[
    str, _format(r"^[^\x00-\x1f\x7f]*$", "a command word without control characters", 4096)
]
Port = Annotated[int, Field(ge=1, le=65535)]
StageName = Annotated[str, _format(r"^[a-z][a-z0-9_-]{0,39}$", "a stage name [a-z][a-z0-9_-]")]
# Another build's id named in an event's data (a rollback's target): the envelope's buildid format.
BuildRef = Annotated[str, _format(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", "a build id [A-Za-z0-9._:-]", 64)]
