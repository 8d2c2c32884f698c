"""Start and stop Kiln's services as local processes (the quick start and the e2e suite).

Each process gets its log file and pid file under the state directory; `stop_all` sends SIGTERM
(the services finish the message in hand), then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else sys.executable


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


def start(process: Process, state: Path, base_env: dict[str, str]) -> int:
    logs, pids = state / "logs", state / "pids"
    logs.mkdir(parents=True, exist_ok=True)
    pids.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{process.name}.log", "ab")  # noqa: SIM115 (the child owns it)
    child = subprocess.Popen(
        [PYTHON, *process.args],
        cwd=ROOT,
        env={**base_env, **process.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (pids / f"{process.name}.pid").write_text(str(child.pid))
    return child.pid


def running(state: Path) -> dict[str, int]:
    alive = {}
    for pid_file in sorted((state / "pids").glob("*.pid")):
        pid = int(pid_file.read_text())
        if exited(pid):
            pid_file.unlink()
            continue
        alive[pid_file.stem] = pid
    return alive


def exited(pid: int) -> bool:
    """True once the process is gone. A process started by this one (the e2e suite starts the
    stack itself) stays a zombie that `kill(pid, 0)` still finds until it is reaped: reap it."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop(name: str, pid: int, state: Path, grace_s: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if exited(pid):
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    (state / "pids" / f"{name}.pid").unlink(missing_ok=True)


def stop_all(state: Path, grace_s: float = 30) -> list[str]:
    stopped = []
    for name, pid in running(state).items():
        stop(name, pid, state, grace_s)
        stopped.append(name)
    return stopped


def log_tail(state: Path, name: str, lines: int = 30) -> str:
    path = state / "logs" / f"{name}.log"
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
