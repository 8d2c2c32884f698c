"""skopeo as the attester's simple signer (GPG) and the deployer's policy check (both use it: shared).

Signing: `skopeo copy --sign-by <fingerprint>` of `repo@digest` onto `repo@digest` (no tag is
written, so a tag that moved on since is never pulled back; no layer moves: the registry has
them), with a registries.d whose `lookaside-staging` is the signature directory; skopeo writes
`<repo>@sha256=<hex>/signature-1` there. Verifying: `skopeo copy --policy` with a `signedBy`
requirement to a throwaway `dir:`, the same check podman and CRI-O run before they start a
container. Registry credentials reach skopeo in an auth file (mode 0600, deleted after) so they
never show on a command line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.naming import split_repository
from shared.registry.transport import plain_http_allowed, with_tls_hint


class SigningError(RuntimeError):
    """skopeo could not sign (missing, wrong key, registry refused)."""


@dataclass(frozen=True)
class PolicyVerdict:
    accepted: bool
    reason: str


@dataclass(frozen=True)
class SimpleSignature:
    digest: str
    # Where the signature now lives: the lookaside file written by skopeo.
    location: str


class SkopeoSigner:
    def __init__(
        self,
        *,
        lookaside_dir: str | Path,
        lookaside_url: str | None = None,
        binary: str = "skopeo",
        registry_credentials: tuple[str, str] | None = None,
        insecure_hosts: frozenset[str] = frozenset(),
        timeout_s: float = 600,
    ):
        self.binary = binary
        self.lookaside_dir = Path(lookaside_dir).expanduser()
        self.lookaside_url = lookaside_url or self.lookaside_dir.resolve().as_uri()
        self.registry_credentials = registry_credentials
        self.insecure_hosts = insecure_hosts
        self.timeout_s = timeout_s

    # -- ports ------------------------------------------------------------------------------

    def sign(
        self,
        repository: str,
        digest: str,
        *,
        gpg_home: str | Path,
        fingerprint: str,
        passphrase: str | None = None,
    ) -> SimpleSignature:
        """Sign `repository@digest` with the GPG key `fingerprint`; the image is not re-tagged."""
        self.lookaside_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kiln-attest-") as work:
            work_dir = Path(work)
            digest_file = work_dir / "digest"
            # index-only: an index is signed by itself (its images on their own image.pushed);
            # a single image is copied whole either way.
            argv = [self.binary, "copy", "--retry-times", "2", "--multi-arch", "index-only"]
            argv += ["--sign-by", fingerprint]
            argv += ["--digestfile", str(digest_file), "--preserve-digests"]
            if passphrase:
                secret = _private_file(work_dir / "passphrase", passphrase.encode())
                argv += ["--sign-passphrase-file", str(secret)]
            argv += self._common(work_dir, repository, staging=True)
            argv += self._tls("src", repository) + self._tls("dest", repository)
            argv += [f"docker://{repository}@{digest}", f"docker://{repository}@{digest}"]
            env = {**os.environ, "GNUPGHOME": str(Path(gpg_home).expanduser())}
            self._run(argv, env=env, what=f"signing {repository}@{digest}")
            written = digest_file.read_text().strip()
        if written != digest:
            raise SigningError(f"skopeo re-pushed {repository}@{digest} as {written}")
        _, path = split_repository(repository)
        location = self.lookaside_dir / f"{path}@{digest.replace(':', '=')}" / "signature-1"
        return SimpleSignature(digest=digest, location=str(location))

    def verify(self, repository: str, digest: str, *, public_key: str | Path) -> PolicyVerdict:
        """Would a containers policy that requires `public_key`'s signature accept this image?"""
        with tempfile.TemporaryDirectory(prefix="kiln-verify-") as work:
            work_dir = Path(work)
            policy = work_dir / "policy.json"
            policy.write_text(json.dumps(signed_by_policy(repository, public_key)))
            # all: skopeo 1.9.3 evaluates the policy on each image it copies, never on an index
            # itself, so an index is accepted when every one of its platform images is.
            argv = [self.binary, "copy", "--multi-arch", "all", "--policy", str(policy)]
            argv += self._common(work_dir, repository, staging=False)
            argv += self._tls("src", repository)
            argv += [f"docker://{repository}@{digest}", f"dir:{work_dir / 'image'}"]
            try:
                self._run(argv, env=dict(os.environ), what=f"verifying {repository}@{digest}")
            except SigningError as exc:
                return PolicyVerdict(False, str(exc))
        return PolicyVerdict(True, f"signed by {Path(public_key).name} (containers policy signedBy)")

    # -- running ----------------------------------------------------------------------------

    def _common(self, work_dir: Path, repository: str, *, staging: bool) -> list[str]:
        registries_d = work_dir / "registries.d"
        registries_d.mkdir()
        host, _ = split_repository(repository)
        entry = {"lookaside": self.lookaside_url}
        if staging:
            entry["lookaside-staging"] = self.lookaside_dir.resolve().as_uri()
        # JSON is YAML: no YAML writer needed for registries.d.
        (registries_d / "kiln.yaml").write_text(json.dumps({"docker": {host or "docker.io": entry}}))
        argv = ["--registries.d", str(registries_d)]
        if self.registry_credentials and host:
            user, password = self.registry_credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            auth = _private_file(
                work_dir / "auth.json", json.dumps({"auths": {host: {"auth": token}}}).encode()
            )
            argv += ["--authfile", str(auth)]
        return argv

    def _tls(self, side: str, repository: str) -> list[str]:
        plain = plain_http_allowed(repository, self.insecure_hosts)
        return [f"--{side}-tls-verify={'false' if plain else 'true'}"]

    def _run(self, argv: list[str], *, env: dict[str, str], what: str) -> None:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=self.timeout_s)
        except FileNotFoundError:
            raise SigningError(f"skopeo not found at {self.binary!r}: set KILN_SKOPEO") from None
        except subprocess.TimeoutExpired:
            raise SigningError(f"skopeo timed out after {self.timeout_s:.0f}s {what}") from None
        if result.returncode != 0:
            raise SigningError(with_tls_hint(f"{what}: {fatal_message(result.stderr)}", argv[-2]))


def fatal_message(stderr: str) -> str:
    """skopeo's last line without its logrus frame: `time=… level=fatal msg="X"` -> X."""
    line = (stderr.strip().splitlines() or [""])[-1]
    match = re.search(r'msg="(.*)"\s*$', line)
    return match.group(1).replace('\\"', '"') if match else line


def signed_by_policy(repository: str, public_key: str | Path) -> dict:
    """A containers policy.json that accepts `repository` only signed by `public_key`, nothing else."""
    return {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                repository: [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": str(Path(public_key).expanduser().resolve()),
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ]
            },
        },
    }


def _private_file(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path
