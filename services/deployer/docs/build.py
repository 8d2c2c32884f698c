"""Build a checkout's docs with MkDocs (in a child process: mkdocs_runner.py) and read back what
every page became."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.deployer.ports import DocsFailed
from shared.logging import REDACT

RUNNER = Path(__file__).with_name("mkdocs_runner.py")
# What the child may see of the deployer's environment: enough to run, no Kiln setting, no key.
CHILD_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_MESSAGE_LINES = 15


@dataclass(frozen=True)
class BuiltPage:
    src: str  # docs_dir-relative source file, e.g. guide/setup.md
    url: str  # site-relative URL, e.g. guide/setup.html
    title: str
    description: str
    html: str  # the page body as MkDocs rendered it (no theme)


@dataclass(frozen=True)
class BuiltDocs:
    site_name: str
    site_description: str
    pages: tuple[BuiltPage, ...]


def build_docs(
    repo: Path, mkdocs_file: str, work: Path, *, timeout_s: float, env: Mapping[str, str]
) -> BuiltDocs:
    """`mkdocs_file` is relative to the repository root; the site is written under `work`."""
    root = repo.resolve()
    config = (root / mkdocs_file).resolve()
    if not config.is_relative_to(root):
        raise DocsFailed(f"docs.mkdocs: {mkdocs_file} leaves the repository")
    if not config.is_file():
        raise DocsFailed(
            f"docs.mkdocs: no {mkdocs_file} in the repository; add one or point docs.mkdocs at it"
        )
    out = work / "pages.json"
    command = [sys.executable, "-I", str(RUNNER), str(config), str(work / "site"), str(out)]
    try:
        done = subprocess.run(
            command,
            cwd=config.parent,
            env={name: env[name] for name in CHILD_ENV if name in env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DocsFailed(
            f"mkdocs build of {mkdocs_file} did not finish within {timeout_s:.0f}s "
            "(KILN_DEPLOYER_DOCS_TIMEOUT_S)"
        ) from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "").strip().splitlines()[-_MESSAGE_LINES:]
        raise DocsFailed(f"mkdocs build of {mkdocs_file} failed: " + REDACT("\n".join(lines)))
    result = json.loads(out.read_text(encoding="utf-8"))
    return BuiltDocs(
        site_name=result["site_name"],
        site_description=result["site_description"],
        pages=tuple(BuiltPage(**page) for page in result["pages"]),
    )
