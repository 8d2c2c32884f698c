# shellcheck shell=bash
# `./kiln-dev test [pytest args]`: everything a test run needs, then ruff and pytest.

register_subcommand test "install + services, then ruff check . and pytest [args] (default: tests/)"

PYTEST_NO_TESTS_COLLECTED=5

# Exit status: pytest's; 5 (no tests collected) is reported as a failure; when pytest passes
# but ruff found problems, 1. ruff findings do not stop pytest: both results are worth seeing.
cmd_test() {
  local started
  started=$(now_s)
  # The tests prove a second Python (trixie's 3.13): its base and headers images are built too.
  KILN_WITH_EXTRA_SUITES=1 with_state_lock do_prepare
  print_phases "$started"
  # shellcheck source=/dev/null
  source "$KILN_DEV_ENV"

  step "ruff check ."
  local ruff_clean=1
  "$KILN_VENV/bin/ruff" check --output-format=concise . || ruff_clean=0

  local pytest_args=("$@")
  # The whole suite prints its 25 slowest tests: CI's time budget (30 min) is watched from there.
  ((${#pytest_args[@]})) || pytest_args=(tests/ --durations=25)
  step "pytest ${pytest_args[*]}"
  local status=0
  "$KILN_VENV/bin/pytest" "${pytest_args[@]}" || status=$?

  local lint_verdict="ruff clean"
  ((ruff_clean)) || lint_verdict="ruff found problems (fix them: .venv/bin/ruff check --fix . helps)"
  case $status in
  0)
    if ((ruff_clean)); then
      step "kiln-dev test: PASSED (pytest passed, $lint_verdict)"
    else
      step "kiln-dev test: FAILED - pytest passed but $lint_verdict"
      status=1
    fi
    ;;
  "$PYTEST_NO_TESTS_COLLECTED")
    step "kiln-dev test: FAILED - pytest collected no tests (exit 5): check the paths/-k in '${pytest_args[*]}'; $lint_verdict"
    ;;
  *) step "kiln-dev test: FAILED (pytest exit code $status; $lint_verdict)" ;;
  esac
  return "$status"
}
