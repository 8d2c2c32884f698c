"""What a repository's requirement file may say: `name[extras] specifier ; marker`, nothing else.

A requirement file is repository content, so it only chooses *which* packages a tier holds. Where
they come from is the operator's (KILN_PIP_INDEX_URL): option lines (`-i`, `--index-url`,
`--extra-index-url`, `-f`, `--find-links`, `--trusted-host`, `-e`, `-r`/`-c` includes ...) and
direct references (`pkg @ https://…`, paths, VCS URLs, archive files) are refused with the file
and line named. The compiler checks the files it bundles; the imager checks the lines it hands to
pip again, because they reach it through an artifact.
"""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement

ALLOWED_FORM = "name[extras] specifier ; marker (e.g. `requests[socks]>=2.31 ; python_version >= '3.11'`)"


class RefusedRequirement(ValueError):
    """A requirement line that could choose the index, a URL or a local path."""


def requirement_lines(text: str, origin: str) -> list[str]:
    """The checked lines pip may act on; comments, inline comments and blank lines dropped.
    `origin` names the file in errors (e.g. `requirements/report.txt`)."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            check_requirement(line, f"{origin}:{number}")
            lines.append(line)
    return lines


def check_requirement(line: str, where: str) -> None:
    problem = _problem(line)
    if problem:
        raise RefusedRequirement(
            f"{where}: {line!r} refused: {problem}. A repository requirement line may only be "
            f"{ALLOWED_FORM}; the package index is the operator's setting KILN_PIP_INDEX_URL"
        )


def _problem(line: str) -> str | None:
    if line.startswith("-"):
        return (
            "pip options (-i/--index-url, --extra-index-url, -f/--find-links, --trusted-host, -e, -r, -c) "
            "are not allowed in a repository's requirements"
        )
    if line.endswith("\\"):
        return "line continuations are not allowed"
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return "not a requirement (a path, URL, archive or VCS reference is not allowed)"
    if requirement.url:
        return "direct references (`name @ URL`) are not allowed"
    return None
