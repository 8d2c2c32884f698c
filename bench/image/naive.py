"""The baseline: the seed's style, one generic Dockerfile for every service, requirements installed
inside the build. No TLS inside a build here, so the wheels are downloaded on the host and installed
with `RUN pip --no-index` (the same work a networked build does, minus the download)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

GENERIC_DOCKERFILE = """FROM {base}
COPY . /src
RUN python3 -m venv /venv && /venv/bin/pip install --no-index --find-links /src/wheels \\
    -r /src/requirements/minimal.txt -r /src/requirements/report.txt
ENV PYTHONPATH=/src
ARG MODULE
ENV MODULE=$MODULE
CMD /venv/bin/python -m $MODULE
"""


def naive_build_all(services, src: Path, platform: str, base: str, registry, run: str, auth, no_cache: bool):
    from services.imager.adapters.docker_engine import DockerEngineBuilder

    wheels = src / "wheels"
    if not wheels.is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "-d",
                str(wheels),
                "-r",
                str(src / "requirements" / "report.txt"),
            ],
            check=True,
        )
    builder = DockerEngineBuilder(no_cache=no_cache)
    started = time.monotonic()
    digests = {}
    for name, service in services.items():
        context = _context(src, GENERIC_DOCKERFILE.format(base=base))
        reference = f"{registry.host}/bench{run}/naive-{name}:latest"
        module = service.command[-1]
        stream = builder.client.api.build(
            fileobj=io.BytesIO(context), custom_context=True, tag=reference, platform=platform,
            buildargs={"MODULE": module}, nocache=no_cache, rm=True, decode=True,
        )  # fmt: skip
        for chunk in stream:
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
        digests[name] = builder.push(reference, auth).digest
    return time.monotonic() - started, digests


def _context(src: Path, dockerfile: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(src, arcname=".")
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
