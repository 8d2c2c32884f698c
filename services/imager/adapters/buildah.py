"""ImageBuilder with buildah: daemonless, for workers inside Kubernetes pods.

`buildah bud --arch` needs no QEMU here because the generated Dockerfile has no RUN step.
vfs + chroot isolation work as root without overlay or user namespaces (a plain pod).
TLS is verified for every registry except loopback and the operator's KILN_REGISTRY_INSECURE_HOSTS
(shared.registry.transport): the base image's registry for `bud`, the target's for `push`.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
import threading
from io import BytesIO
from pathlib import Path

from services.imager.ports import (
    BuildFailed,
    BuiltImage,
    Progress,
    PushResult,
    RegistryAuth,
    RegistryAuthFailed,
)
from services.imager.proof_cache import runtime_key
from shared.platforms import arch_of
from shared.registry.transport import plain_http_allowed, with_tls_hint

GLOBAL_OPTIONS = ["--storage-driver", "vfs"]


def bud_command(
    context_dir: Path,
    reference: str,
    platform: str,
    dockerfile: str,
    *,
    tls_verify: bool = True,
    auth: RegistryAuth | None = None,
) -> list[str]:
    """The base image comes from a registry (pulled once into buildah's store): no daemon to ask."""
    arch = arch_of(platform)
    return [
        "buildah", *GLOBAL_OPTIONS, "bud", "--isolation", "chroot", "--arch", arch, "--os", "linux",
        "--layers", f"--tls-verify={str(tls_verify).lower()}",
        *(["--creds", f"{auth.username}:{auth.password or ''}"] if auth and auth.username else []),
        "-f", str(context_dir / dockerfile), "-t", reference, str(context_dir),
    ]  # fmt: skip


def base_image_of(dockerfile: Path) -> str:
    """The first `FROM` of a generated Dockerfile: the registry `bud` pulls from."""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.upper().startswith("FROM "):
            return line.split()[1]
    return ""


class BuildahBuilder:
    def __init__(
        self, *, insecure_hosts: frozenset[str] = frozenset(), auth: RegistryAuth | None = None,
        timeout_s: int = 900, scratch_dir: Path | None = None, scratch_prefix: str = "kiln-buildah-",
    ):  # fmt: skip
        self.insecure_hosts = insecure_hosts
        # The unpacked context: under the work dir's jobs/ with the worker's id, so what a killed
        # worker left is found by its successor (services/imager/cleanup.py).
        self.scratch_dir, self.scratch_prefix = scratch_dir, scratch_prefix
        self.auth = auth  # for pulling the base image from a private registry
        self.timeout_s = timeout_s

    def _run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s, **kwargs)

    def _run_showing(self, command: list[str], progress: Progress | None) -> tuple[int, list[str]]:
        """Run `command`, handing each output line (stdout and stderr) to `progress` as it comes."""
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(self.timeout_s, kill)
        timer.start()
        log: list[str] = []
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\n")
                log.append(line)
                if progress is not None:
                    progress(line)
            code = process.wait()
        finally:
            timer.cancel()
        if expired.is_set():
            log.append(f"buildah killed after {self.timeout_s}s (the builder's timeout)")
        return code, log

    def build(
        self,
        context_tar: bytes,
        reference: str,
        *,
        platform: str,
        dockerfile: str = "Dockerfile",
        progress: Progress | None = None,
    ) -> BuiltImage:
        if self.scratch_dir is not None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=self.scratch_prefix, dir=self.scratch_dir) as scratch:
            with tarfile.open(fileobj=BytesIO(context_tar)) as tar:
                tar.extractall(scratch, filter="tar")
            base = base_image_of(Path(scratch) / dockerfile)
            command = bud_command(
                Path(scratch),
                reference,
                platform,
                dockerfile,
                tls_verify=not plain_http_allowed(base, self.insecure_hosts),
                auth=self.auth,
            )
            code, log = self._run_showing(command, progress)
        if code != 0:
            message = f"buildah bud of {reference} failed (exit {code})"
            raise BuildFailed(with_tls_hint(message + " " + " ".join(log[-1:]), base), log)
        inspect = json.loads(
            self._run(["buildah", *GLOBAL_OPTIONS, "inspect", "--type", "image", reference]).stdout
        )
        size = sum(
            int(layer.get("size", 0) or 0) for layer in inspect.get("OCIv1", {}).get("layers", []) or []
        )
        oci = inspect.get("OCIv1") or {}
        content = runtime_key(
            {
                "RootFS": {"Layers": (oci.get("rootfs") or {}).get("diff_ids")},
                "Config": oci.get("config") or {},
                "Architecture": oci.get("architecture"),
                "Os": oci.get("os"),
            }
        )
        return BuiltImage(
            image_id=inspect.get("FromImageID", reference),
            reference=reference,
            size_bytes=size,
            log=log,
            content_key=content,
        )

    def tag(self, image_id: str, reference: str) -> None:
        self._run(["buildah", *GLOBAL_OPTIONS, "tag", image_id, reference], check=True)

    def push(self, reference: str, auth: RegistryAuth, *, progress: Progress | None = None) -> PushResult:
        with tempfile.TemporaryDirectory(prefix="kiln-buildah-push-") as scratch:
            digest_file = Path(scratch) / "digest"
            command = ["buildah", *GLOBAL_OPTIONS, "push", "--digestfile", str(digest_file)]
            if plain_http_allowed(reference, self.insecure_hosts):
                command.append("--tls-verify=false")
            if auth.username:
                # argv is visible to root on this host only; buildah has no stdin form for --creds
                command += ["--creds", f"{auth.username}:{auth.password or ''}"]
            code, output = self._run_showing([*command, reference, f"docker://{reference}"], progress)
            if code != 0:
                error = [line for line in output if line.strip()][-1:] or ["unknown error"]
                if "unauthorized" in error[0].lower() or "authentication" in error[0].lower():
                    raise RegistryAuthFailed(f"registry refused the credentials pushing {reference}")
                raise RuntimeError(
                    with_tls_hint(f"buildah push of {reference} failed: {error[0]}", reference)
                )
            return PushResult(digest=digest_file.read_text().strip(), size_bytes=0)

    def remove(self, reference: str) -> None:
        self._run(["buildah", *GLOBAL_OPTIONS, "rmi", reference])
