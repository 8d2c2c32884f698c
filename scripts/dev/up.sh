# shellcheck shell=bash
# `./kiln-dev up`: the quick start. Everything `services` starts, then every Kiln service as a
# local process (scripts/stack/), and the example package built end to end from a signed
# Bitbucket push. Ends with the dashboard URL and where the report email is.

register_subcommand up "install + services, start every Kiln service, build the example end to end"

KILN_STACK_DIR="$KILN_STATE_DIR/stack"

cmd_up() {
  local started
  started=$(now_s)
  with_state_lock do_prepare
  # shellcheck source=/dev/null
  source "$KILN_DEV_ENV"
  step "starting Kiln (logs: .kiln/stack/logs/) and building the example package"
  phase "Kiln services + example build" \
    "$KILN_VENV/bin/python" scripts/stack/stack.py --state-dir "$KILN_STACK_DIR" up "$@" ||
    die "the example build did not succeed" \
      "read the failing stage above and its service's log in .kiln/stack/logs/; ./kiln-dev up runs it again"
  print_phases "$started"
}

stop_stack() {
  [[ -d $KILN_STACK_DIR/pids ]] || return 0
  step "stopping the Kiln services and the deployed example"
  "$KILN_VENV/bin/python" scripts/stack/stack.py --state-dir "$KILN_STACK_DIR" down
}
