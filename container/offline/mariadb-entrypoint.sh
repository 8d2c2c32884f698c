#!/bin/sh
# Initialises an empty data directory from the mysql image's variables (MYSQL_DATABASE,
# MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD), then runs mariadbd in the foreground.
# Passwords go to the server over its local socket, never into a file of the image.
set -eu
: "${MYSQL_DATABASE:?set MYSQL_DATABASE}" "${MYSQL_USER:?set MYSQL_USER}"
: "${MYSQL_PASSWORD:?set MYSQL_PASSWORD}" "${MYSQL_ROOT_PASSWORD:?set MYSQL_ROOT_PASSWORD}"
install -d -o mysql -g mysql /run/mysqld /var/lib/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
  echo "kiln-mariadb: initialising /var/lib/mysql (database $MYSQL_DATABASE, user $MYSQL_USER)"
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  until mariadb-admin --socket=/run/mysqld/init.sock ping --silent 2>/dev/null; do sleep 1; done
  mariadb --socket=/run/mysqld/init.sock <<SQL
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4;
CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';
ALTER USER 'root'@'localhost' IDENTIFIED BY '$MYSQL_ROOT_PASSWORD';
SQL
  kill "$pid"
  wait "$pid" || true
fi
unset MYSQL_PASSWORD MYSQL_ROOT_PASSWORD
exec mariadbd --user=mysql --bind-address=0.0.0.0 --character-set-server=utf8mb4 \
  --collation-server=utf8mb4_unicode_ci
