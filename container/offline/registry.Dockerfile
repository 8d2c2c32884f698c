# Debian's docker-registry (Distribution 2.8, the code of registry:2). wget for the health check.
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry wget \
 && rm -rf /var/lib/apt/lists/*
# registry:2's layout: data in /var/lib/registry; auth and other settings from REGISTRY_* variables.
ENV REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/registry REGISTRY_HTTP_ADDR=:5000
EXPOSE 5000
CMD ["docker-registry", "serve", "/etc/docker/registry/config.yml"]
