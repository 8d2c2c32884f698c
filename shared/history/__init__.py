"""The run history's read side. `shared.history.read_model` is the contract between the reporter
(the only writer of those tables) and every reader (gateway, reporter's report and email, CLI):
which tables and columns, who writes them, which function reads what. Import from there; this
package re-exports its names.

- `list_builds(session, package=None, status=None, ref=None, limit=50, offset=0) -> dict`
- `build_detail(session, build_id) -> dict | None`
- `build_diff(session, build_a, build_b) -> dict` (raises `BuildNotFound`)
- `find_stage_trigger(session, build_id, stage) -> list[Envelope]` (for replays)
- `latest_compiled_build(session, package, before=None) -> str | None` (for `--skip-compile`)
- `rollback_target(session, package, number) -> dict | None` (for `POST /packages/{package}/rollback`)
- `with_index_sizes(images) -> images` (multi-arch index rows get their platform images' sizes)
- `build_events`, `stored_envelopes`, `build_logs`, `registry_overview`, `builds_in_flight`,
  `queued_builds` (the gateway's API, SSE history, branch limit and superseding)
"""

from shared.history.read_model import *  # noqa: F403
from shared.history.read_model import __all__  # noqa: F401
