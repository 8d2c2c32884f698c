"""Build a checkout's docs with MkDocs (in a child process: mkdocs_runner.py) and read back what
every page became.

`mkdocs.yml` may load hooks and plugins, i.e. run the repository's code: the child runs in the
sandbox (shared/sandbox.py): no network, none of the deployer's environment, no /proc in which
to read the deployer's, the checkout read-only and only the work directory writable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.deployer.ports import DocsFailed
from shared.logging import REDACT
from shared.sandbox import REQUIRED, Sandbox, SandboxUnavailable, python_paths

RUNNER = Path(__file__).with_name("mkdocs_runner.py")
# What the child may see of the deployer's environment: locale and time zone, no Kiln setting, no key.
CHILD_ENV = ("LANG", "LC_ALL", "TZ")
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
    repo: Path,
    mkdocs_file: str,
    work: Path,
    *,
    timeout_s: float,
    env: Mapping[str, str],
    sandbox: Sandbox = REQUIRED,
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
    work.mkdir(parents=True, exist_ok=True)  # the only place the child may write
    out = work / "pages.json"
    command = [sys.executable, "-I", str(RUNNER), str(config), str(work / "site"), str(out)]
    try:
        done = sandbox.run(
            command,
            read_only=[*python_paths(), RUNNER, root],
            writable=[work],
            env={name: env[name] for name in CHILD_ENV if name in env},
            cwd=config.parent,
            timeout=timeout_s,
        )
    except SandboxUnavailable as unavailable:
        raise DocsFailed(f"mkdocs build of {mkdocs_file} not run: {unavailable}") from None
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
