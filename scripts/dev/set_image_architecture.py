"""Rewrite the architecture recorded in a local Docker image's config.

Debian's Docker 20.10 records the daemon's own architecture for `docker import --platform`
(measured here with and without --experimental). An arm64 rootfs labelled amd64 would be run
without QEMU and picked by the wrong workers, so kiln-dev round-trips it:
docker save -> patch config JSON -> docker load.

usage: set_image_architecture.py IMAGE ARCH
"""

import hashlib
import io
import json
import subprocess
import sys
import tarfile


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def rewrite_architecture(saved_image: bytes, architecture: str) -> bytes:
    output = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(saved_image)) as source,
        tarfile.open(fileobj=output, mode="w") as target,
    ):
        manifest = json.loads(source.extractfile("manifest.json").read())
        old_config_name = manifest[0]["Config"]
        config = json.loads(source.extractfile(old_config_name).read())
        config["architecture"] = architecture
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        # The config's file name is its digest: docker load derives the image id from it.
        new_config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest[0]["Config"] = new_config_name

        for member in source.getmembers():
            if member.name in (old_config_name, "manifest.json"):
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        _add_member(target, new_config_name, config_bytes)
        _add_member(target, "manifest.json", json.dumps(manifest).encode())
    return output.getvalue()


def main(image: str, architecture: str) -> None:
    saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout
    patched = rewrite_architecture(saved, architecture)
    subprocess.run(["docker", "load", "-q"], input=patched, check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
