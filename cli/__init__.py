"""The `kiln` command line: a client of the gateway's REST API, plus the stage commands."""

from cli.main import main

__all__ = ["main"]
