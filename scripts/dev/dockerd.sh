# shellcheck shell=bash
# dockerd and binfmt: the container engine, able to run arm64 images under QEMU.

DOCKERD_PIDFILE="$KILN_STATE_DIR/dockerd.pid"
DOCKERD_LOG="$KILN_STATE_DIR/dockerd.log"
BINFMT_DIR=/proc/sys/fs/binfmt_misc

docker_answers() { # the client reaches a daemon (any client version: the API version is negotiated)
  docker version >/dev/null 2>&1
}

ensure_dockerd() {
  if docker_answers; then
    step "dockerd: answering"
    return 0
  fi
  require_root services
  command -v dockerd >/dev/null || die "dockerd is not installed" "run ./kiln-dev install"
  step "starting dockerd (log: .kiln/dockerd.log)"
  setsid nohup dockerd --pidfile "$DOCKERD_PIDFILE" \
    >>"$DOCKERD_LOG" 2>&1 </dev/null &
  wait_until 60 dockerd docker_answers ||
    die "dockerd did not answer within 60 s" "read the end of .kiln/dockerd.log"
  note "dockerd $(docker version -f '{{.Server.Version}}') answering"
}

# Containers run arm64 binaries through the kernel's binfmt_misc; the `F` (fix-binary) flag
# makes the host's qemu usable inside a container's root filesystem.
ensure_binfmt_aarch64() {
  local entry="$BINFMT_DIR/qemu-aarch64"
  if [[ -e $entry ]] && grep -qx enabled "$entry"; then
    step "binfmt qemu-aarch64: registered"
    return 0
  fi
  require_root services
  if [[ ! -e $BINFMT_DIR/register ]]; then
    step "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" ||
      die "cannot mount binfmt_misc" "the kernel needs CONFIG_BINFMT_MISC; on a container host, run kiln-dev on the host"
  fi
  step "registering qemu-aarch64 with binfmt"
  [[ -e /var/lib/binfmts/qemu-aarch64 ]] || update-binfmts --import qemu-aarch64
  update-binfmts --enable qemu-aarch64 ||
    die "update-binfmts could not enable qemu-aarch64" "run ./kiln-dev install (qemu-user-static, binfmt-support)"
  grep -q '^flags:.*F' "$entry" ||
    warn "qemu-aarch64 is registered without the F flag: arm64 containers may fail to start"
}
