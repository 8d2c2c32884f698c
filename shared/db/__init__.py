"""Run history and shared state in MySQL/MariaDB through SQLAlchemy 2; schema by Alembic."""

from shared.db.engine import make_engine, make_sessions, next_build_number, upgrade

__all__ = ["make_engine", "make_sessions", "next_build_number", "upgrade"]
