from __future__ import annotations

import argparse
import sys

import scripts.generate
from scripts.generate import COMMAND, ROOT, render_all, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=scripts.generate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        for path in paths:
            print(f"stale: {path} (regenerate with `{COMMAND}`)", file=sys.stderr)
        return 1 if paths else 0
    for path, text in render_all().items():
        target = ROOT / path
        if target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
