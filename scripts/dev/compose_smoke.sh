# shellcheck shell=bash
# `./kiln-dev compose-smoke [--keep]`: docker-compose.yml for real on this machine, with
# docker-compose.offline.yml (no Docker Hub here): build every image, start the stack with two
# amd64 image workers, wait for every health check, build the example package end to end through
# the compose gateway, check what it left, tear down. Prints its timings. Slow (minutes), so not
# part of CI; docs/operations.md has the figures and what it proves.

register_subcommand compose-smoke "build + start docker-compose.yml (offline override), build the example end to end, tear down"

SMOKE_PROJECT=kiln-smoke
SMOKE_DIR="$KILN_STATE_DIR/compose-smoke"
# Host ports of the smoke stack: none of the machine's own services' (5000, 5672, 3306, 8000...).
SMOKE_GATEWAY_PORT=18000
SMOKE_REGISTRY_PORT=18500
SMOKE_PIP_CA=build/compose/pip-ca.pem
SMOKE_PYTHON_IMAGE=kiln-python:3.11
SMOKE_PYTHON_STAGE=build/compose/python

smoke_compose() {
  docker-compose -p "$SMOKE_PROJECT" --env-file "$SMOKE_DIR/compose.env" \
    -f docker-compose.yml -f docker-compose.offline.yml -f scripts/dev/compose_smoke.yml "$@"
}

# The CA bundle pip on this host trusts (a TLS-intercepting proxy's CA is in it), for the pip
# step of Kiln's image: copied into the build context, used by the build stage only.
smoke_pip_ca_setting() {
  local cert=${PIP_CERT:-}
  [[ -n $cert ]] || cert=$("$KILN_VENV/bin/pip" config list 2>/dev/null |
    sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -1)
  [[ -n $cert && -r $cert ]] || return 0
  mkdir -p "$(dirname "$SMOKE_PIP_CA")"
  cp "$cert" "$SMOKE_PIP_CA"
  printf 'KILN_PIP_CA_FILE=%s\n' "$SMOKE_PIP_CA"
}

# Kiln's image needs CPython >= 3.11.4 (Debian bookworm has 3.11.2: container/offline/python.Dockerfile).
# The one this machine runs Kiln on (the .venv's) is staged, without its site-packages, as the
# base image in python:3.11-slim's layout.
smoke_python_base() {
  local prefix version
  read -r prefix version < <("$KILN_VENV/bin/python" -c \
    'import sys; print(sys.base_prefix, "%d.%d.%d" % sys.version_info[:3])')
  "$KILN_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11, 4) or sys.version_info >= (3, 12))' ||
    die "the .venv's Python is $version; Kiln's image needs CPython 3.11.4 or later 3.11" \
      "recreate .venv on such a Python (KILN_PYTHON=... ./kiln-dev install)"
  if docker image inspect "$SMOKE_PYTHON_IMAGE" >/dev/null 2>&1; then
    note "$SMOKE_PYTHON_IMAGE: present"
    return 0
  fi
  step "base image $SMOKE_PYTHON_IMAGE: CPython $version from $prefix on kiln-base:bookworm-amd64"
  mkdir -p "$SMOKE_PYTHON_STAGE"
  rsync -a --delete --exclude 'lib/python3.11/site-packages/*' --exclude 'lib/python3.11/test/' \
    --exclude '__pycache__' --exclude '_tkinter*' --exclude 'lib/python3.11/tkinter/' \
    "$prefix/" "$SMOKE_PYTHON_STAGE/"
  docker build -q -f container/offline/python.Dockerfile -t "$SMOKE_PYTHON_IMAGE" "$SMOKE_PYTHON_STAGE" >/dev/null ||
    die "building $SMOKE_PYTHON_IMAGE failed" "docker build -f container/offline/python.Dockerfile $SMOKE_PYTHON_STAGE"
}

smoke_health() { # container id: healthy | starting | unhealthy | exited:<code> | running
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else if .State.Running}}running{{else}}exited:{{.State.ExitCode}}{{end}}' "$1"
}

# Every container healthy (migrate: exited 0). Fails fast on an unhealthy or failed one.
smoke_all_healthy() {
  local id state name waiting=0
  for id in $(smoke_compose ps -q); do
    state=$(smoke_health "$id")
    name=$(docker inspect -f '{{.Name}}' "$id")
    case $state in
    healthy | exited:0) ;;
    starting | running) waiting=1 ;;
    *)
      SMOKE_FAILED="${name#/} is $state"
      return 0
      ;;
    esac
  done
  ((waiting == 0))
}

smoke_wait_healthy() {
  local waited=0
  SMOKE_FAILED=""
  until smoke_all_healthy; do
    [[ -z $SMOKE_FAILED ]] || break
    ((waited >= 300)) && SMOKE_FAILED="not every container healthy after 300 s"
    [[ -n $SMOKE_FAILED ]] && break
    ((waited > 0 && waited % 15 == 0)) && note "waiting for health checks (${waited}s)"
    sleep 1
    waited=$((waited + 1))
  done
  if [[ -n $SMOKE_FAILED ]]; then
    smoke_compose ps >&2
    die "$SMOKE_FAILED" "its log: docker-compose -p $SMOKE_PROJECT logs <service> (run with --keep to keep the stack)"
  fi
}

smoke_engine() { docker exec -i "$(smoke_compose ps -q engine)" "$@"; }

smoke_teardown() {
  step "tearing the stack down (docker-compose down -v)"
  smoke_compose down -v --remove-orphans >/dev/null 2>&1 || warn "docker-compose down failed; run: docker-compose -p $SMOKE_PROJECT down -v"
}

cmd_compose-smoke() {
  local keep=0
  [[ ${1:-} == --keep ]] && keep=1
  command -v docker-compose >/dev/null || die "docker-compose is not installed" "run ./kiln-dev install"
  [[ -x $KILN_VENV/bin/python ]] || die "no .venv" "run ./kiln-dev install"
  local arch
  for arch in amd64 arm64; do
    docker image inspect "kiln-base:bookworm-$arch" >/dev/null 2>&1 ||
      die "base image kiln-base:bookworm-$arch is missing" "run ./kiln-dev services (it builds it with debootstrap)"
  done
  local t0 t_build t_up t_healthy result=0
  t0=$SECONDS

  step "preparing $SMOKE_DIR (secrets, keys, example repository, compose.env)"
  mkdir -p "$SMOKE_DIR/registry"
  "$KILN_VENV/bin/python" scripts/dev/compose_smoke.py prepare --state "$SMOKE_DIR" \
    --setting "KILN_GATEWAY_PORT=127.0.0.1:$SMOKE_GATEWAY_PORT" \
    --setting "KILN_PUBLIC_URL=http://127.0.0.1:$SMOKE_GATEWAY_PORT" \
    --setting "KILN_REGISTRY_PORT=$SMOKE_REGISTRY_PORT" \
    --setting "KILN_RABBITMQ_UI_PORT=18672" --setting "KILN_MAILPIT_UI_PORT=18025" \
    --setting "KILN_REGISTRY_HTPASSWD=$SMOKE_DIR/registry/htpasswd" \
    --setting "KILN_BASE_IMAGE_AMD64=registry:5000/kiln/base:bookworm-amd64" \
    --setting "KILN_BASE_IMAGE_ARM64=registry:5000/kiln/base:bookworm-arm64" \
    --setting "KILN_OFFLINE_PYTHON_BASE=$SMOKE_PYTHON_IMAGE" \
    $(smoke_pip_ca_setting | sed 's/^/--setting /')
  local registry_password
  registry_password=$(grep '^KILN_REGISTRY_PASSWORD=' "$SMOKE_DIR/compose.env" | cut -d= -f2-)
  (umask 077 && printf '%s\n' "$registry_password" | htpasswd -niB kiln | sed '/^$/d' >"$SMOKE_DIR/registry/htpasswd")
  chmod 644 "$SMOKE_DIR/registry/htpasswd" # the registry runs as root; a bcrypt hash, not the password

  smoke_python_base
  step "docker-compose build (every image, from Debian packages on kiln-base:bookworm-amd64)"
  smoke_compose build -q || die "docker-compose build failed" "re-run without -q: docker-compose ... build"
  t_build=$((SECONDS - t0))

  ((keep)) || trap smoke_teardown EXIT
  step "docker-compose up -d --scale imager-amd64=2"
  local t_start=$SECONDS
  smoke_compose up -d --scale imager-amd64=2 2>&1 | sed 's/^/    /' ||
    die "docker-compose up failed (above)" "docker-compose -p $SMOKE_PROJECT logs <service>"
  t_up=$((SECONDS - t_start))
  smoke_wait_healthy
  t_healthy=$((SECONDS - t_start))
  smoke_compose ps | sed 's/^/    /'

  # The compiler reads each base image's Python from a registry (docs/compiler.md "Target
  # Python"), and the engine builds FROM it: loaded into the engine, pushed from there.
  step "the base images of the images Kiln builds: into the stack's engine and its registry"
  docker save kiln-base:bookworm-amd64 kiln-base:bookworm-arm64 | smoke_engine docker load -q | sed 's/^/    /'
  printf '%s\n' "$registry_password" | smoke_engine docker login -u kiln --password-stdin registry:5000 >/dev/null ||
    die "docker login registry:5000 in the stack's engine failed" "docker-compose -p $SMOKE_PROJECT logs registry"
  for arch in amd64 arm64; do
    smoke_engine docker tag "kiln-base:bookworm-$arch" "registry:5000/kiln/base:bookworm-$arch"
    smoke_engine docker push -q "registry:5000/kiln/base:bookworm-$arch" | sed 's/^/    /' ||
      die "pushing registry:5000/kiln/base:bookworm-$arch failed" "docker-compose -p $SMOKE_PROJECT logs registry"
  done

  step "RabbitMQ consumers per image queue (two amd64 workers expected)"
  docker exec "$(smoke_compose ps -q rabbitmq)" rabbitmqctl -q list_queues name consumers |
    grep -E '^kiln\.imager\.(amd64|arm64)\s' | sed 's/^/    /'

  step "building the example: a signed push to the compose gateway on 127.0.0.1:$SMOKE_GATEWAY_PORT"
  local t_push=$SECONDS
  "$KILN_VENV/bin/python" scripts/dev/compose_smoke.py build --state "$SMOKE_DIR" \
    --gateway "http://127.0.0.1:$SMOKE_GATEWAY_PORT" --registry "127.0.0.1:$SMOKE_REGISTRY_PORT" || result=1
  local t_build_wall=$((SECONDS - t_push))

  step "what the build left"
  note "deployed on the stack's engine:"
  smoke_engine docker ps --filter label=dev.kiln.stack \
    --format '{{.Names}} {{.Image}} {{.Status}}' | sed 's/^/      /'
  note "report emails caught (mail-data volume):"
  docker exec "$(smoke_compose ps -q mailpit)" ls /var/lib/mail | sed 's/^/      /'

  step "timings: images built ${t_build}s, up ${t_up}s, every health check passing ${t_healthy}s after up, example build ${t_build_wall}s"
  ((keep)) && note "stack kept: docker-compose -p $SMOKE_PROJECT --env-file $SMOKE_DIR/compose.env -f docker-compose.yml -f docker-compose.offline.yml -f scripts/dev/compose_smoke.yml down -v"
  ((result == 0)) || die "the example build did not succeed" \
    "read the failing stage above; docker-compose -p $SMOKE_PROJECT logs <service> (run with --keep to keep the stack)"
  step "compose smoke: PASSED"
}
