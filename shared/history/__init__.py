"""Read-side queries over the run history (the reporter writes it; the gateway and CLI read it).

- `list_builds(session, package=None, status=None, ref=None, limit=50, offset=0) -> dict`
- `build_detail(session, build_id) -> dict | None`
- `build_diff(session, build_a, build_b) -> dict` (raises `BuildNotFound`)
- `find_stage_trigger(session, build_id, stage) -> list[Envelope]` (for replays)
- `latest_compiled_build(session, package, before=None) -> str | None` (for `--skip-compile`)
- `with_index_sizes(images) -> images` (multi-arch index rows get their platform images' sizes)
"""

from shared.history.diff import build_diff
from shared.history.queries import (
    BuildNotFound,
    build_detail,
    latest_compiled_build,
    list_builds,
    with_index_sizes,
)
from shared.history.replay import STAGE_TRIGGERS, find_stage_trigger

__all__ = [
    "STAGE_TRIGGERS",
    "BuildNotFound",
    "build_detail",
    "build_diff",
    "find_stage_trigger",
    "latest_compiled_build",
    "list_builds",
    "with_index_sizes",
]
