# shellcheck shell=bash
# The one path `up` and `test` take to a working machine: `install` + `services`, with the slow,
# independent parts run side by side, and the time of each phase printed (so a newcomer sees where
# the minutes go). On a fresh machine the critical path is apt, then the arm64 base rootfs under
# QEMU (≈3 min); pip, the amd64 rootfs and the daemons all fit beside it.

KILN_PHASES=()                 # "name<TAB>seconds", in the order they ended
declare -A KILN_BACKGROUND=()  # name -> pid of a phase running in the background

now_s() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

phase() { # name command...: run it here, record how long it took, return its status
  local name=$1 started status=0
  started=$(now_s)
  shift
  "$@" || status=$?
  KILN_PHASES+=("$name"$'\t'"$(elapsed_since "$started")")
  return "$status"
}

# background name command...: start a phase beside the others; its output goes to a log that
# await_phase prints (so parallel phases do not interleave on the terminal).
background() {
  local name=$1 log
  shift
  log=$(phase_log "$name")
  (
    started=$(now_s)
    "$@"
    elapsed_since "$started" >"$log.seconds"
  ) >"$log" 2>&1 &
  KILN_BACKGROUND[$name]=$!
}

await_phase() { # name: wait for a background phase, show its output, stop if it failed
  local name=$1 log status=0
  log=$(phase_log "$name")
  wait "${KILN_BACKGROUND[$name]}" || status=$?
  unset "KILN_BACKGROUND[$name]"
  cat "$log"
  ((status == 0)) || die "$name failed (its output is above; log: ${log#"$KILN_ROOT"/})" \
    "fix what it says, then run the same ./kiln-dev command again: finished phases are skipped"
  KILN_PHASES+=("$name"$'\t'"$(cat "$log.seconds")")
}

phase_log() { printf '%s/phase-%s.log' "$KILN_STATE_DIR" "${1//[^a-zA-Z0-9]/-}"; }

print_phases() { # total_started: one line per phase, then the wall time (phases overlap)
  local entry
  step "time per phase (pip and the base rootfs builds run beside the daemons)"
  for entry in "${KILN_PHASES[@]}"; do
    printf '    %-34s %7ss\n' "${entry%%$'\t'*}" "${entry#*$'\t'}"
  done
  printf '    %-34s %7ss\n' "wall time" "$(elapsed_since "$1")"
}

# Callers print the phases (print_phases) when they have added their own.
# KILN_WITH_EXTRA_SUITES=1 (what `test` sets) also builds the trixie bases and headers images that
# the tests proving a second Python need; `up` builds bookworm's only.
do_prepare() {
  local arch suite extra=()
  [[ ${KILN_WITH_EXTRA_SUITES:-0} == 1 ]] && extra=("${EXTRA_SUITES[@]}")
  mkdir -p "$KILN_STATE_DIR"
  phase "apt packages" install_apt_packages
  background "python venv (pip)" install_venv
  # The arm64 rootfs's second stage runs under QEMU: binfmt first.
  phase "binfmt qemu-aarch64" ensure_binfmt_aarch64
  for arch in "${BASE_ARCHITECTURES[@]}"; do
    background "base rootfs $arch (debootstrap)" build_base_rootfs "$arch"
    for suite in "${extra[@]}"; do
      background "$suite rootfs $arch (debootstrap)" build_suite_tarballs "$arch" "$suite"
    done
  done
  phase "RabbitMQ" ensure_rabbitmq
  phase "MariaDB" ensure_mariadb
  phase "dockerd" ensure_dockerd
  phase "registry" ensure_registry
  await_phase "python venv (pip)"
  for arch in "${BASE_ARCHITECTURES[@]}"; do
    await_phase "base rootfs $arch (debootstrap)"
    phase "base image $arch (import, push)" import_and_push_base_image "$arch"
    for suite in "${extra[@]}"; do
      await_phase "$suite rootfs $arch (debootstrap)"
      phase "$suite images $arch (import, push)" import_and_push_suite_images "$arch" "$suite"
    done
  done
  write_dev_env
}
