"""`python -m shared.db upgrade`: bring the schema to the newest revision of every branch.

Run once before (or as) the services start; the services never create tables themselves.
The URL comes from KILN_DATABASE_URL (shared.settings), or --url.
"""

from __future__ import annotations

import argparse
import sys

from shared.db import upgrade
from shared.logging import REDACT
from shared.settings import KilnSettings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.db", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply every pending migration (alembic upgrade heads)")
    up.add_argument("--url", help="database URL (default: KILN_DATABASE_URL)")
    args = parser.parse_args(argv)
    url = args.url or load_settings(KilnSettings).database_url
    try:
        upgrade(url)
    except Exception as exc:  # the operator needs the reason, not a traceback
        print(f"migration failed: {REDACT(str(exc))}", file=sys.stderr)
        print("check KILN_DATABASE_URL and that the database exists and is reachable", file=sys.stderr)
        return 1
    print("database schema is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
