"""What the compose substrate keeps in its state directory, one 0700 directory per stack: the files
its containers mount (the trimmed config, each reading service's app config, the package's two
key files) and the number of the release that runs. Config files are named by their checksum:
one file per version, so a rollback still finds the file its containers mount, and a changed
file is a changed mount (the container is recreated). Secrets are never written here: they go to
the containers through the Docker API only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.deployer.scaffold import ScaffoldInputs
from services.deployer.scaffold.hardening import key_files
from shared.bus import PermanentError


class StackState:
    def __init__(self, state_dir: Path, stack: str):
        self.directory = state_dir / stack

    def ensure(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # holds the key copies: nobody else on the host walks into it
        return self.directory

    def config_file(self, inputs: ScaffoldInputs) -> Path:
        return self._versioned("config", inputs.config_checksum, inputs.config_json)

    def app_config_file(self, inputs: ScaffoldInputs, service: str) -> Path | None:
        checksum = inputs.app_config_checksum(service)
        if checksum is None:
            return None
        return self._versioned(f"app-config-{service}", checksum, inputs.app_configs[service])

    def _versioned(self, stem: str, checksum: str, text: str) -> Path:
        path = self.ensure() / f"{stem}-{checksum.split(':')[1][:16]}.json"
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return path

    def copy_keys(self, inputs: ScaffoldInputs) -> tuple[Path, str]:
        """This package's two key files only, readable by the app user inside its containers (the
        0700 stack directory keeps them from other users of the host), and their digest (a
        rotated key is a changed container)."""
        source = Path(inputs.keys_dir).expanduser()
        target = self.ensure() / "keys"
        target.mkdir(exist_ok=True)
        target.chmod(0o755)
        wanted = key_files(inputs.topology.package)
        for stale in target.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        digest = hashlib.sha256()
        for name in wanted:
            try:
                data = (source / name).read_bytes()
            except OSError as exc:
                package = inputs.topology.package
                raise PermanentError(
                    f"packages.{package}.keys.dir: cannot read {name} ({exc}); "
                    f"create them: python -m shared.config keys generate --package {package}"
                ) from None
            digest.update(data)
            copy = target / name
            copy.unlink(missing_ok=True)
            copy.write_bytes(data)
            copy.chmod(0o444)
        return target, digest.hexdigest()

    def record_revision(self, revision: int) -> None:
        (self.ensure() / "revision").write_text(f"{revision}\n")

    def revision(self) -> int | None:
        """The release that runs (a container left untouched keeps the label of an older one)."""
        try:
            return int((self.directory / "revision").read_text().strip())
        except (OSError, ValueError):
            return None


def read_mounted(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None  # state dir wiped: a rollback keeps the current file
