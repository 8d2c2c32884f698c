"""Proves an image starts without a daemon: `buildah from` + `buildah mount`, then the image's CMD
runs in the sandbox (shared/sandbox.py) with the image's file system as its root.

The image is repository code (issue #13): `buildah run --isolation chroot` would share the worker's
network (the broker, the database, the metadata address) and its privileges. In the sandbox it has
its own empty network namespace, runs as nobody with no capabilities, the image read-only with a
private /tmp, and only the image's own environment (plus PORT). An HTTP service is probed from
inside that namespace: a small launcher run by the image's python3 starts the CMD and reports on a
pipe, which the CMD itself does not inherit, once the health path answers. Images of another
architecture run under QEMU through binfmt (fix-binary), so their windows are longer.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import time

from services.imager.adapters.buildah import GLOBAL_OPTIONS
from services.imager.ports import ProofResult
from services.imager.traceback_reading import find_missing_import
from services.imager.worker_ledger import proof_container_name
from shared.platforms import DEFAULT
from shared.sandbox import REQUIRED, Sandbox, SandboxUnavailable

LOG_LINES = 50
log = logging.getLogger(__name__)
# Run by the image's python3: argv = report fd, health URL, CMD...; "healthy" on the fd when 2xx.
HEALTH_LAUNCHER = """
import os, subprocess, sys, time, urllib.request
report, url, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
child = subprocess.Popen(command, stderr=subprocess.STDOUT)
while child.poll() is None:
    try:
        if 200 <= urllib.request.urlopen(url, timeout=2).status < 300:
            os.write(report, b"healthy\\n")
            break
    except Exception:
        time.sleep(0.3)
sys.exit(child.wait())
"""


class BuildahProver:
    def __init__(self, *, stay_up_s: float = 3.0, timeout_s: float = 30.0, emulated_factor: float = 3.0,
                 host_platform: str = DEFAULT.name, sandbox: Sandbox = REQUIRED,
                 worker_id: str | None = None):  # fmt: skip
        self.stay_up_s, self.timeout_s = stay_up_s, timeout_s
        self.emulated_factor, self.host_platform = emulated_factor, host_platform
        self.sandbox = sandbox
        self.worker_id = worker_id  # names its working containers: a successor knows whose they are

    def prove(
        self, reference: str, *, platform: str, port: int | None, health_path: str | None
    ) -> ProofResult:
        factor = 1.0 if platform == self.host_platform else self.emulated_factor
        buildah = ["buildah", *GLOBAL_OPTIONS]
        name = ["--name", proof_container_name(self.worker_id)] if self.worker_id else []
        container = _buildah(buildah, "from", "--pull-never", *name, reference)
        try:
            config = (json.loads(_buildah(buildah, "inspect", container)).get("OCIv1", {}) or {}).get(
                "config"
            ) or {}
            rootfs = _buildah(buildah, "mount", container)
            probe = os.pipe() if port and health_path else None
            try:
                process = self._start(config, rootfs, port, health_path, probe)
            except SandboxUnavailable as unavailable:
                return ProofResult(False, f"the image was not run: {unavailable}")
            return self._watch(process, probe[0] if probe else None, health_path if probe else None, factor)
        finally:
            subprocess.run([*buildah, "umount", container], capture_output=True)
            subprocess.run([*buildah, "rm", container], capture_output=True)

    def _start(self, config: dict, rootfs: str, port, health_path, probe) -> subprocess.Popen:
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        env = dict(line.split("=", 1) for line in config.get("Env") or [] if "=" in line)
        if port:
            env["PORT"] = str(port)  # its own loopback: no other process shares the namespace
        if probe:
            command = ["python3", "-c", HEALTH_LAUNCHER, str(probe[1]),
                       f"http://127.0.0.1:{port}{health_path}", *command]  # fmt: skip
        if not self.sandbox.available():
            log.warning("UNSANDBOXED: proving %s with buildah run (KILN_ALLOW_UNSANDBOXED=true)", rootfs)
            argv = ["chroot", rootfs, *command]
        else:
            argv = self.sandbox.command(
                command, env=env, cwd=config.get("WorkingDir") or "/", image_root=rootfs
            )
        outer_env = {} if self.sandbox.available() else env  # bwrap itself holds nothing of ours
        process = subprocess.Popen(
            argv, env=outer_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            pass_fds=(probe[1],) if probe else (),
        )  # fmt: skip
        if probe:
            os.close(probe[1])
        return process

    def _watch(self, process: subprocess.Popen, report: int | None, health_path: str | None, factor: float):
        started = time.monotonic()
        try:
            while time.monotonic() - started < self.timeout_s * factor:
                if process.poll() is not None:
                    return _died(process)
                if report is not None and select.select([report], [], [], 0)[0]:
                    if os.read(report, 64).startswith(b"healthy"):
                        return _stop(process, ProofResult(True, f"{health_path} answered"))
                elif report is None and time.monotonic() - started >= self.stay_up_s * factor:
                    return _stop(
                        process, ProofResult(True, f"still running after {self.stay_up_s * factor:.0f}s")
                    )
                time.sleep(0.3)
            return _stop(
                process, ProofResult(False, f"did not become ready within {self.timeout_s * factor:.0f}s")
            )
        finally:
            if report is not None:
                os.close(report)


def _buildah(buildah: list[str], *args: str) -> str:
    return subprocess.run([*buildah, *args], capture_output=True, text=True, check=True).stdout.strip()


def _died(process: subprocess.Popen) -> ProofResult:
    log_lines = (process.stdout.read() if process.stdout else "").splitlines()[-LOG_LINES:]
    missing = find_missing_import("\n".join(log_lines))
    if missing is not None:
        return ProofResult(False, f"missing factory: {missing.describe()}", missing.importer,
                           missing.missing, log_lines)  # fmt: skip
    return ProofResult(False, f"exited with code {process.returncode} during the proof window", log=log_lines)


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
