"""The whole stack, as the quick start runs it, isolated per test run: its own RabbitMQ vhost,
MariaDB database, gateway and SMTP ports, state directory and container name prefix."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pymysql
import pytest

from scripts.stack.example import DEMO, Example
from scripts.stack.layout import Stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def isolated_stack(
    state, example: Example = DEMO, overrides: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A started stack for `example` (its operator config), removed whole afterwards."""
    run = uuid.uuid4().hex[:6]
    stack = Stack(
        state=state,
        vhost=f"kiln-e2e-{run}",
        database=f"kiln_e2e_{run}",
        gateway_port=free_port(),
        smtp_port=free_port(),
        prefix=f"kiln-e2e-{run}-",
        env=dict(os.environ),
        overrides=overrides or {},
        example=example,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.down()
        subprocess.run(["rabbitmqctl", "delete_vhost", stack.vhost], capture_output=True)
        with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{stack.database}`")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # the proof's stay-up window (3 s by default): 1 s is still a real run of every image, and
    # saves ~2 s on each of the ~40 proofs this file runs, most of them in series
    with isolated_stack(tmp_path_factory.mktemp("stack"), overrides={"KILN_PROVE_STAY_UP_S": "1"}) as started:
        yield started
