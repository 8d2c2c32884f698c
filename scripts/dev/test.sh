# `./kiln-dev test [pytest args]`: everything a test run needs, then ruff and pytest.

register_subcommand test "install + services, then ruff check . and pytest [args] (default: tests/)"

PYTEST_NO_TESTS_COLLECTED=5

cmd_test() {
  with_state_lock do_install
  with_state_lock do_services
  # shellcheck source=/dev/null
  source "$KILN_DEV_ENV"

  step "ruff check ."
  "$KILN_VENV/bin/ruff" check . ||
    die "ruff check failed" "fix the findings above (.venv/bin/ruff check --fix . fixes some)"

  local pytest_args=("$@")
  ((${#pytest_args[@]})) || pytest_args=(tests/)
  step "pytest ${pytest_args[*]}"
  local status=0
  "$KILN_VENV/bin/pytest" "${pytest_args[@]}" || status=$?
  case $status in
  0) step "kiln-dev test: PASSED" ;;
  "$PYTEST_NO_TESTS_COLLECTED")
    step "kiln-dev test: FAILED - pytest collected no tests (exit 5); check the paths/-k given: ${pytest_args[*]}"
    ;;
  *) step "kiln-dev test: FAILED (pytest exit code $status)" ;;
  esac
  return "$status"
}
