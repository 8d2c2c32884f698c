# MariaDB from Debian, standing in for mysql:8.4 (Kiln supports both: docs/operations.md).
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* \
 && install -d -o mysql -g mysql /run/mysqld
COPY container/offline/mariadb-entrypoint.sh /usr/local/bin/kiln-mariadb
EXPOSE 3306
CMD ["kiln-mariadb"]
