"""Builds a repository's docs with MkDocs, in a child process of the deployer, and writes what
each page became (its HTML as MkDocs rendered it, title, URL) to a JSON file.

Run as `python -I mkdocs_runner.py CONFIG SITE_DIR OUT_JSON` (see docs/build.py): a script, not
a module of the deployer, because `mkdocs.yml` may load hooks and plugins, i.e. run code from the
repository. The child runs in the sandbox (shared/sandbox.py: no network, no Kiln setting, no
/proc of the deployer, the checkout read-only) with a timeout, and `-I` keeps the repository's
directory off sys.path.

`use_directory_urls` is turned off for this build: every page is `<path>.html` and MkDocs writes
every link between pages as a relative `….html` link, which is what the wiki publisher rewrites.
"""

from __future__ import annotations

import json
import logging
import sys

from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.plugins import BasePlugin, event_priority


class PageCollector(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.pages: list[dict[str, str]] = []

    @event_priority(-100)  # last: after every other plugin has changed the page
    def on_page_content(self, html, page, config, files):
        self.pages.append(
            {
                "src": page.file.src_uri,
                "url": page.url,
                "title": page.title or "",
                "description": str((page.meta or {}).get("description") or ""),
                "html": html,
            }
        )
        return html


def main(argv: list[str]) -> int:
    config_file, site_dir, out = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(config_file=config_file, site_dir=site_dir, use_directory_urls=False)
        collector = PageCollector()
        config.plugins["kiln-wiki-pages"] = collector
        build(config)
    except Exception as exc:  # any failure of the build: its message is what the user needs
        print(f"mkdocs build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    result = {
        "site_name": config.site_name,
        "site_description": config.site_description or "",
        "pages": collector.pages,
    }
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
