"""Proves an image starts on a Docker Engine: run its own CMD, watch it for a while, probe health.

A worker passes when it is still running after `stay_up_s`; an HTTP service when its health path
answers 2xx on the published port before `timeout_s`. Images of another architecture run under
QEMU (binfmt), so their windows are longer.
"""

from __future__ import annotations

import contextlib
import time

import docker
import httpx
from docker.errors import APIError, NotFound

from services.imager.ports import ProofResult
from services.imager.traceback_reading import find_missing_import

LOG_LINES = 50


class DockerProver:
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        stay_up_s: float = 3.0,
        timeout_s: float = 30.0,
        emulated_factor: float = 3.0,
        host_platform: str = "linux/amd64",
    ):
        self.client = client or docker.from_env()
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
            ports={f"{port}/tcp": ("127.0.0.1", None)} if port and health_path else None,
            labels={"dev.kiln.proof": "1"},
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
        url = None
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                return self._died(container)
            if health_path and port:
                url = url or _health_url(container, port, health_path)
                if url and _answers(url):
                    return ProofResult(ok=True, reason=f"{health_path} answered", log=_logs(container))
            elif time.monotonic() - started >= stay_up:
                return ProofResult(
                    ok=True, reason=f"still running after {stay_up:.0f}s", log=_logs(container)
                )
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


def _health_url(container, port: int, health_path: str) -> str | None:
    bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp") or []
    if not bindings:
        return None
    return f"http://127.0.0.1:{bindings[0]['HostPort']}{health_path}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).is_success
    except httpx.HTTPError:
        return False


def _logs(container) -> list[str]:
    text = container.logs(stdout=True, stderr=True, tail=LOG_LINES).decode(errors="replace")
    return text.splitlines()[-LOG_LINES:]
