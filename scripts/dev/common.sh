# shellcheck shell=bash
# Shared helpers for kiln-dev: paths, progress output, failure hints, small probes.
# Sourced by ./kiln-dev; every other scripts/dev/*.sh file relies on what is defined here.

KILN_STATE_DIR="$KILN_ROOT/.kiln"
KILN_VENV="$KILN_ROOT/.venv"
KILN_DEV_ENV="$KILN_STATE_DIR/dev.env"
KILN_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/kiln"

# Subcommands register themselves here so `./kiln-dev help` lists them without a hand-kept table.
declare -A KILN_SUBCOMMAND_HELP=()
KILN_SUBCOMMAND_ORDER=()

register_subcommand() { # name, one-line description; the function cmd_<name> does the work
  KILN_SUBCOMMAND_HELP[$1]="$2"
  KILN_SUBCOMMAND_ORDER+=("$1")
}

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'kiln-dev: warning: %s\n' "$*" >&2; }

# die MESSAGE [HINT...]: every failure says what to do next.
die() {
  printf 'kiln-dev: error: %s\n' "$1" >&2
  shift
  local hint
  for hint in "$@"; do printf '  -> %s\n' "$hint" >&2; done
  exit 1
}

require_root() {
  [[ $EUID -eq 0 ]] || die "this step installs packages and starts daemons, so it needs root" \
    "re-run as root: sudo ./kiln-dev $*"
}

tcp_answers() { # host port: true when something accepts a TCP connection
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_until() { # seconds, description, command...: poll once a second, print progress every 10 s
  local seconds=$1 what=$2 waited=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((waited >= seconds)) && return 1
    ((waited > 0 && waited % 10 == 0)) && note "still waiting for $what (${waited}s)"
    sleep 1
    waited=$((waited + 1))
  done
}

pid_alive() { # pidfile: true when the process named in it still runs
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# One kiln-dev at a time may install or start things: engineers share this checkout.
with_state_lock() {
  mkdir -p "$KILN_STATE_DIR"
  exec {KILN_LOCK_FD}>"$KILN_STATE_DIR/kiln-dev.lock"
  if ! flock -n "$KILN_LOCK_FD"; then
    step "another kiln-dev is installing or starting services; waiting for it"
    flock "$KILN_LOCK_FD"
  fi
  "$@"
  flock -u "$KILN_LOCK_FD"
}
