"""ImageBuilder with buildah: daemonless, for workers inside Kubernetes pods.

`buildah bud --arch` needs no QEMU here because the generated Dockerfile has no RUN step.
vfs + chroot isolation work as root without overlay or user namespaces (a plain pod).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from services.imager.ports import BuildFailed, BuiltImage, PushResult, RegistryAuth, RegistryAuthFailed

GLOBAL_OPTIONS = ["--storage-driver", "vfs"]


def bud_command(
    context_dir: Path,
    reference: str,
    platform: str,
    dockerfile: str,
    *,
    insecure: bool = True,
    auth: RegistryAuth | None = None,
) -> list[str]:
    """The base image comes from a registry (pulled once into buildah's store): no daemon to ask."""
    arch = platform.split("/", 1)[1]
    return [
        "buildah", *GLOBAL_OPTIONS, "bud", "--isolation", "chroot", "--arch", arch, "--os", "linux",
        "--layers", f"--tls-verify={str(not insecure).lower()}",
        *(["--creds", f"{auth.username}:{auth.password or ''}"] if auth and auth.username else []),
        "-f", str(context_dir / dockerfile), "-t", reference, str(context_dir),
    ]  # fmt: skip


class BuildahBuilder:
    def __init__(
        self, *, insecure_registry: bool = True, auth: RegistryAuth | None = None, timeout_s: int = 900
    ):
        self.insecure_registry = insecure_registry
        self.auth = auth  # for pulling the base image from a private registry
        self.timeout_s = timeout_s

    def _run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s, **kwargs)

    def build(
        self, context_tar: bytes, reference: str, *, platform: str, dockerfile: str = "Dockerfile"
    ) -> BuiltImage:
        with tempfile.TemporaryDirectory(prefix="kiln-buildah-") as scratch:
            with tarfile.open(fileobj=BytesIO(context_tar)) as tar:
                tar.extractall(scratch, filter="tar")
            result = self._run(
                bud_command(
                    Path(scratch),
                    reference,
                    platform,
                    dockerfile,
                    insecure=self.insecure_registry,
                    auth=self.auth,
                )
            )
        log = (result.stdout + result.stderr).splitlines()
        if result.returncode != 0:
            raise BuildFailed(f"buildah bud of {reference} failed (exit {result.returncode})", log)
        inspect = json.loads(
            self._run(["buildah", *GLOBAL_OPTIONS, "inspect", "--type", "image", reference]).stdout
        )
        size = sum(
            int(layer.get("size", 0) or 0) for layer in inspect.get("OCIv1", {}).get("layers", []) or []
        )
        return BuiltImage(
            image_id=inspect.get("FromImageID", reference), reference=reference, size_bytes=size, log=log
        )

    def tag(self, image_id: str, reference: str) -> None:
        self._run(["buildah", *GLOBAL_OPTIONS, "tag", image_id, reference], check=True)

    def push(self, reference: str, auth: RegistryAuth) -> PushResult:
        with tempfile.TemporaryDirectory(prefix="kiln-buildah-push-") as scratch:
            digest_file = Path(scratch) / "digest"
            command = ["buildah", *GLOBAL_OPTIONS, "push", "--digestfile", str(digest_file)]
            if self.insecure_registry:
                command.append("--tls-verify=false")
            if auth.username:
                # argv is visible to root on this host only; buildah has no stdin form for --creds
                command += ["--creds", f"{auth.username}:{auth.password or ''}"]
            result = self._run([*command, reference, f"docker://{reference}"])
            if result.returncode != 0:
                error = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["unknown error"]
                if "unauthorized" in error[0].lower() or "authentication" in error[0].lower():
                    raise RegistryAuthFailed(f"registry refused the credentials pushing {reference}")
                raise RuntimeError(f"buildah push of {reference} failed: {error[0]}")
            return PushResult(digest=digest_file.read_text().strip(), size_bytes=0)

    def remove(self, reference: str) -> None:
        self._run(["buildah", *GLOBAL_OPTIONS, "rmi", reference])
