#!/bin/sh
# The user of the official image's RABBITMQ_DEFAULT_USER/PASS, written at start into the
# container's config (never into the image), then the broker in the foreground as `rabbitmq`.
set -eu
: "${RABBITMQ_DEFAULT_USER:?set RABBITMQ_DEFAULT_USER}"
: "${RABBITMQ_DEFAULT_PASS:?set RABBITMQ_DEFAULT_PASS}"
mkdir -p /etc/rabbitmq/conf.d
umask 027
printf 'default_user = %s\ndefault_pass = %s\nloopback_users = none\n' \
  "$RABBITMQ_DEFAULT_USER" "$RABBITMQ_DEFAULT_PASS" >/etc/rabbitmq/conf.d/10-kiln.conf
chgrp rabbitmq /etc/rabbitmq/conf.d/10-kiln.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
unset RABBITMQ_DEFAULT_PASS
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
  env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
