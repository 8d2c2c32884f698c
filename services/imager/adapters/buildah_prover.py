"""Proves an image starts without a daemon: `buildah from` + `buildah run` (chroot isolation).

chroot isolation shares the host's network, so an HTTP service is started with PORT set to a free
host port and probed there (services read $PORT; Kiln's Dockerfile sets it too).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx

from services.imager.adapters.buildah import GLOBAL_OPTIONS
from services.imager.ports import ProofResult
from services.imager.traceback_reading import find_missing_import

LOG_LINES = 50


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BuildahProver:
    def __init__(self, *, stay_up_s: float = 3.0, timeout_s: float = 30.0, emulated_factor: float = 3.0,
                 host_platform: str = "linux/amd64"):  # fmt: skip
        self.stay_up_s, self.timeout_s = stay_up_s, timeout_s
        self.emulated_factor, self.host_platform = emulated_factor, host_platform

    def prove(
        self, reference: str, *, platform: str, port: int | None, health_path: str | None
    ) -> ProofResult:
        factor = 1.0 if platform == self.host_platform else self.emulated_factor
        buildah = ["buildah", *GLOBAL_OPTIONS]
        container = subprocess.run(
            [*buildah, "from", "--pull-never", reference], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            config = json.loads(
                subprocess.run(
                    [*buildah, "inspect", container], capture_output=True, text=True, check=True
                ).stdout
            )
            command = (config.get("OCIv1", {}).get("config", {}) or {}).get("Cmd") or []
            local_port = _free_port() if port and health_path else None
            env = ["--env", f"PORT={local_port}"] if local_port else []
            process = subprocess.Popen(
                [*buildah, "run", "--isolation", "chroot", *env, container, "--", *command],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            return self._watch(process, local_port, health_path, factor)
        finally:
            subprocess.run([*buildah, "rm", container], capture_output=True)

    def _watch(self, process: subprocess.Popen, port: int | None, health_path: str | None, factor: float):
        started = time.monotonic()
        while time.monotonic() - started < self.timeout_s * factor:
            if process.poll() is not None:
                log = (process.stdout.read() if process.stdout else "").splitlines()[-LOG_LINES:]
                missing = find_missing_import("\n".join(log))
                if missing is not None:
                    return ProofResult(False, f"missing factory: {missing.describe()}", missing.importer,
                                       missing.missing, log)  # fmt: skip
                return ProofResult(
                    False, f"exited with code {process.returncode} during the proof window", log=log
                )
            if port and health_path:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{health_path}", timeout=2).is_success:
                        return _stop(process, ProofResult(True, f"{health_path} answered"))
                except httpx.HTTPError:
                    pass
            elif time.monotonic() - started >= self.stay_up_s * factor:
                return _stop(
                    process, ProofResult(True, f"still running after {self.stay_up_s * factor:.0f}s")
                )
            time.sleep(0.3)
        return _stop(
            process, ProofResult(False, f"did not become ready within {self.timeout_s * factor:.0f}s")
        )


def _stop(process: subprocess.Popen, result: ProofResult) -> ProofResult:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return ProofResult(
        result.ok, result.reason, result.importer, result.missing, (output or "").splitlines()[-LOG_LINES:]
    )
