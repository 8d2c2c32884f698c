# A CPython 3.11 base for Kiln's own image on a host without Docker Hub, in the layout of
# python:3.11-slim-bookworm (/usr/local). Debian bookworm's python3 cannot serve: it is 3.11.2,
# whose tarfile has no extraction filters (3.11.4+), and the imager's artifact extraction uses
# them ("TypeError: TarFile.extractall() got an unexpected keyword argument 'filter'").
# The build context is a CPython 3.11 (>= 3.11.4) installation prefix built for Debian bookworm
# (./kiln-dev compose-smoke stages the machine's own; docs/operations.md).
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libffi8 libsqlite3-0 zlib1g libbz2-1.0 liblzma5 libreadline8 libncursesw6 libuuid1 \
      libexpat1 libnsl2 libtirpc3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/
# libpython is found through the loader cache (the build's RUNPATH named the original prefix).
RUN ldconfig \
 && python3 -c "import sys, tarfile, ssl, sqlite3, ctypes, venv; assert sys.version_info >= (3, 11, 4), sys.version; tarfile.data_filter"
CMD ["python3"]
