# The stack's own Docker Engine (stands in for docker:24-dind): Debian's docker.io.
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/docker
CMD ["dockerd"]
