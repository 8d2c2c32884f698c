"""The docs stage (seed stage 12): check out the build's source, build its docs with MkDocs and
publish them to the package's wiki. Raises DocsFailed with the cause; DeployStep decides (by
`docs.on_failure`) whether that fails the build."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from services.deployer.docs.build import BuiltDocs, build_docs
from services.deployer.docs.wiki_pages import unpublished_assets, wiki_pages
from services.deployer.ports import DocsFailed, WikiPublisher
from shared.config.sections import DocsConfig, WikiConfig
from shared.events.build import Source
from shared.git_source import FetchFailed
from shared.logging import REDACT
from shared.naming import safe_name
from shared.sandbox import REQUIRED, Sandbox

Fetch = Callable[..., Path]  # GitSource.fetch(source, work_dir, *, package): the configured source only
Build = Callable[[Path, str, Path], BuiltDocs]


@dataclass
class DocsStage:
    fetch: Fetch  # source -> checkout directory (GitSource.fetch)
    publisher_for: Callable[[WikiConfig, str], WikiPublisher]  # (wiki config, API key)
    env: Mapping[str, str]
    timeout_s: float = 300.0
    sandbox: Sandbox = REQUIRED  # Sandbox(required=False) only by the operator's KILN_ALLOW_UNSANDBOXED

    def run(self, package: str, docs: DocsConfig, source: Source) -> dict[str, Any]:
        started = time.monotonic()
        build: Build = partial(build_docs, timeout_s=self.timeout_s, env=self.env, sandbox=self.sandbox)
        with tempfile.TemporaryDirectory(prefix="kiln-docs-") as work:
            try:
                repo = self.fetch(source, Path(work), package=package)
            except FetchFailed as exc:
                raise DocsFailed(f"cannot check out the build's source: {exc}") from None
            built = build(repo, docs.mkdocs, Path(work))
        detail: dict[str, Any] = {
            "mkdocs": docs.mkdocs,
            "pages_built": len(built.pages),
            "build_ms": int((time.monotonic() - started) * 1000),
        }
        if docs.wiki is None:
            return {**detail, "pages_published": 0, "note": "no docs.wiki configured: built only"}
        wiki = docs.wiki
        key = self.env.get(wiki.api_key_env)
        if not key:
            raise DocsFailed(
                f"packages.{package}.docs.wiki.api_key_env: {wiki.api_key_env} is not set in the "
                "deployer's environment (a Wiki.js API key: Administration > API Access)"
            )
        REDACT.add(key)  # whatever prints it by accident (an HTTP library's debug log) masks it
        prefix = wiki.path_prefix or safe_name(package)
        pages = wiki_pages(built, prefix=prefix, locale=wiki.locale, origin=_origin(source))
        published = self.publisher_for(wiki, key).publish(pages, locale=wiki.locale, tags=wiki.tags)
        return {
            **detail,
            "pages_published": len(published.created) + len(published.updated),
            "created": list(published.created),
            "updated": list(published.updated),
            "unpublished_assets": unpublished_assets(built),
            "wiki_url": f"{wiki.url}/{wiki.locale}/{prefix}",
        }


def _origin(source: Source) -> str:
    where = REDACT(source.repo_url) if source.repo_url else "a local checkout"
    return f"{where} at {source.commit[:12]}" if source.commit else where
