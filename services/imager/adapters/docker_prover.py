"""Proves an image starts on a Docker Engine: run its own CMD, watch it for a while, probe health.

A worker passes when it is still running after `stay_up_s`; an HTTP service when its health path
answers 2xx before `timeout_s`. Images of another architecture run under QEMU (binfmt), so their
windows are longer: `emulated_factor` times. Under QEMU a worker also passes once it has run
`stay_up_s` past the end of its start-up (its CPU use settled, read from /proc on the engine's
host), when that comes before the long window: the proof's claim is "it survived its imports and
kept running", and emulation slows the imports, not the keeping (issue #17: a 12 s window per
arm64 worker was the build's critical path).

The image is repository code, so it runs confined (issue #13): no network at all (`--network
none`: not the broker, the database, the engine's API on 127.0.0.1:2375 nor the metadata address),
every capability dropped, no-new-privileges, as nobody, a read-only root with a private tmpfs /tmp,
pids and memory limits, and only the image's own environment. The health probe therefore runs
inside the container (`docker exec` of the image's python3 against its own 127.0.0.1), never
through a published port.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from services.imager.adapters.docker_cleanup import OWNER_LABEL, PROOF_LABEL
from services.imager.ports import ProofResult
from services.imager.traceback_reading import find_missing_import
from services.imager.worker_ledger import proof_container_name
from shared.platforms import DEFAULT

LOG_LINES = 50
PROOF_USER = "65534:65534"  # nobody: whatever USER the image names, the proof runs unprivileged
PROOF_LIMITS = {"pids_limit": 256, "mem_limit": "1g", "nano_cpus": 1_000_000_000}
# Run by the image's own python3 inside the container; exit 0 = the health path answered 2xx.
HEALTH_PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    "    answer = urllib.request.urlopen(sys.argv[1], timeout=2)\n"
    "except Exception:\n"
    "    sys.exit(1)\n"
    "sys.exit(0 if 200 <= answer.status < 300 else 1)\n"
)


class DockerProver:
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        stay_up_s: float = 3.0,
        timeout_s: float = 30.0,
        emulated_factor: float = 3.0,
        host_platform: str = DEFAULT.name,
        worker_id: str | None = None,
    ):
        self.client = client or docker.from_env()
        self.worker_id = worker_id  # names and labels its proofs: a successor knows whose they are
        self.stay_up_s = stay_up_s
        self.timeout_s = timeout_s
        self.emulated_factor = emulated_factor
        self.host_platform = host_platform

    def prove(
        self, reference: str, *, platform: str, port: int | None, health_path: str | None
    ) -> ProofResult:
        factor = 1.0 if platform == self.host_platform else self.emulated_factor
        container = self.client.containers.run(
            reference,
            detach=True,
            platform=platform,
            labels={PROOF_LABEL: "1", **({OWNER_LABEL: self.worker_id} if self.worker_id else {})},
            name=proof_container_name(self.worker_id) if self.worker_id else None,
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=PROOF_USER,
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            **PROOF_LIMITS,
        )
        try:
            return self._watch(container, port, health_path, factor)
        finally:
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True)

    def _watch(self, container, port: int | None, health_path: str | None, factor: float) -> ProofResult:
        started = time.monotonic()
        deadline = started + self.timeout_s * factor
        stay_up = self.stay_up_s * factor
        settle = StartUpSettle() if factor > 1 and not (health_path and port) else None
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                return self._died(container)
            now = time.monotonic()
            if health_path and port:
                if _answers(container, f"http://127.0.0.1:{port}{health_path}"):
                    return ProofResult(ok=True, reason=f"{health_path} answered", log=_logs(container))
            elif now - started >= stay_up:
                return ProofResult(
                    ok=True, reason=f"still running after {stay_up:.0f}s", log=_logs(container)
                )
            elif settle is not None and settle.seen(container, now) and now - settle.at >= self.stay_up_s:
                reason = f"still running {self.stay_up_s:.0f}s after its start-up settled"
                return ProofResult(ok=True, reason=f"{reason} ({now - started:.0f}s)", log=_logs(container))
            time.sleep(0.3)
        what = f"{health_path} did not answer" if health_path else "did not settle"
        return ProofResult(
            ok=False, reason=f"{what} within {self.timeout_s * factor:.0f}s", log=_logs(container)
        )

    def _died(self, container) -> ProofResult:
        log = _logs(container)
        code = container.attrs["State"]["ExitCode"]
        missing = find_missing_import("\n".join(log))
        if missing is not None:
            return ProofResult(
                ok=False,
                reason=f"missing factory: {missing.describe()}",
                importer=missing.importer,
                missing=missing.missing,
                log=log,
            )
        return ProofResult(ok=False, reason=f"exited with code {code} during the proof window", log=log)


class StartUpSettle:
    """When a container's start-up is over: the CPU its processes used stops growing (under
    `IDLE` of one core over `WINDOW_S`). Read from /proc/<pid>/stat of the container's first
    process (children it waited for included) on the engine's host; an engine elsewhere (a remote
    DOCKER_HOST, a containerised worker) cannot be read, and the proof keeps its long window."""

    WINDOW_S = 1.0
    IDLE = 0.05

    def __init__(self) -> None:
        self.at: float = 0.0
        self._samples: list[tuple[float, float]] = []

    def seen(self, container, now: float) -> bool:
        """True once settled (then `at` is when); sampled at each call."""
        if self.at:
            return True
        used = container_cpu_seconds(container)
        if used is None:
            return False
        self._samples.append((now, used))
        self._samples = [(t, u) for t, u in self._samples if now - t <= self.WINDOW_S + 0.5]
        first_t, first_u = self._samples[0]
        if now - first_t >= self.WINDOW_S and (used - first_u) / (now - first_t) < self.IDLE:
            self.at = now
        return bool(self.at)


def container_cpu_seconds(container) -> float | None:
    """CPU seconds of the container's first process and its waited-for children, or None."""
    pid = (container.attrs.get("State") or {}).get("Pid")
    if not pid:
        return None
    try:
        # The pid is the engine's host's: only trust it if it is this container's process here.
        if container.id not in Path(f"/proc/{pid}/cgroup").read_text():
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        return None


def _answers(container, url: str) -> bool:
    try:
        result = container.exec_run(["python3", "-c", HEALTH_PROBE, url], user=PROOF_USER, environment={})
    except APIError:  # the container stopped between reload() and exec: the loop sees it next
        return False
    return result.exit_code == 0


def _logs(container) -> list[str]:
    text = container.logs(stdout=True, stderr=True, tail=LOG_LINES).decode(errors="replace")
    return text.splitlines()[-LOG_LINES:]
