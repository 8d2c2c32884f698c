"""Fixtures for real infrastructure, isolated: a RabbitMQ vhost per test module (the work queues
are real, so one module's leftover events must not reach another module's consumers) and a
MariaDB database per run (tests scope their queries by their own build ids).

A test that needs a real service fails when the service is missing; it never skips.
The base URLs come from KILN_AMQP_URL / KILN_DATABASE_URL (./kiln-dev writes them), with the
machine defaults otherwise.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pymysql
import pytest

BASE_AMQP_URL = os.environ.get("KILN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BASE_DATABASE_URL = os.environ.get("KILN_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/")
RUN_ID = uuid.uuid4().hex[:8]


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")


@pytest.fixture(scope="module")
def amqp_vhost(request) -> Iterator[str]:
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40]
    vhost = f"kiln-test-{RUN_ID}-{module}"
    user = urlsplit(BASE_AMQP_URL).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    yield vhost
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def amqp_url(amqp_vhost: str) -> str:
    parts = urlsplit(BASE_AMQP_URL)
    return urlunsplit(parts._replace(path="/" + quote(amqp_vhost, safe="")))


def _server_url() -> tuple[dict[str, object], str]:
    parts = urlsplit(BASE_DATABASE_URL)
    connect = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
    }
    return connect, urlunsplit(parts._replace(path="/"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database per run, migrated with Alembic (the real migration, not create_all)."""
    from shared.db import upgrade

    connect, server = _server_url()
    name = f"kiln_test_{RUN_ID}"
    with pymysql.connect(**connect) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = server.rstrip("/") + "/" + name + "?charset=utf8mb4"
    upgrade(url)
    yield url
    with pymysql.connect(**connect) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def db_engine(database_url: str):
    from shared.db import make_engine

    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(db_engine):
    from shared.db import make_sessions

    return make_sessions(db_engine)
