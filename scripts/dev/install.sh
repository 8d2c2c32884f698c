# shellcheck shell=bash
# `./kiln-dev install`: Debian packages, the arm64 cross toolchain and the project venv.

register_subcommand install "install missing Debian packages and the .venv (root, idempotent)"

# Debian package -> why Kiln needs it. Presence is checked with dpkg, so a newer tool
# elsewhere on PATH (e.g. a docker client in /usr/local/bin) does not hide a missing daemon.
KILN_APT_PACKAGES=(
  docker.io                # dockerd: builds, runs and pushes images
  docker-registry          # Distribution 2.8 (registry:2) as the local registry
  apache2-utils            # htpasswd with bcrypt for the registry
  qemu-user-static         # runs arm64 binaries (containers, debootstrap second stage)
  binfmt-support           # registers qemu with the kernel
  debootstrap              # base image rootfs
  buildah                  # daemonless image builds
  bubblewrap               # bwrap: the sandbox for repository code (shared/sandbox.py)
  git
  ccache
  curl
  gcc-aarch64-linux-gnu    # cross-compiles Cython C for arm64
  libpython3.11-dev:arm64  # arm64 Python headers for that cross compile
  chromium                 # Playwright browser tests
  docker-compose           # validates docker-compose.yml in the tests (docker-compose config)
  python3-venv
  skopeo                   # attester: GPG simple signing and signedBy policy checks
  gnupg                    # attester: the simple-signing key (gpg --batch --gen-key)
)

apt_package_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

missing_apt_packages() {
  local package
  for package in "${KILN_APT_PACKAGES[@]}"; do
    apt_package_installed "$package" || printf '%s\n' "$package"
  done
}

ensure_arm64_architecture() {
  dpkg --print-foreign-architectures | grep -qx arm64 && return 0
  step "adding dpkg architecture arm64"
  dpkg --add-architecture arm64
}

# Without systemd, package scripts would start Debian's own dockerd and registry (on :5000,
# with Debian's config). kiln-dev starts both itself, so keep the package scripts from doing it.
with_service_starts_blocked() {
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created=1
  fi
  local status=0
  "$@" || status=$?
  ((created)) && rm -f "$policy"
  return "$status"
}

install_apt_packages() {
  local missing
  mapfile -t missing < <(missing_apt_packages)
  if ((${#missing[@]} == 0)); then
    step "Debian packages: all ${#KILN_APT_PACKAGES[@]} present"
    return 0
  fi
  require_root install
  ensure_arm64_architecture
  step "apt-get update"
  apt-get update -qq || die "apt-get update failed" \
    "check /etc/apt/sources.list.d/ and that the Debian mirror is reachable"
  local package
  for package in "${missing[@]}"; do step "installing $package"; done
  DEBIAN_FRONTEND=noninteractive with_service_starts_blocked \
    apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >"$KILN_STATE_DIR/apt-install.log" 2>&1 ||
    die "apt-get install failed (log: .kiln/apt-install.log)" \
      "read the end of .kiln/apt-install.log; fix the package problem and re-run ./kiln-dev install"
  mapfile -t missing < <(missing_apt_packages)
  ((${#missing[@]} == 0)) || die "still missing after install: ${missing[*]}" \
    "see .kiln/apt-install.log"
}

pyproject_fingerprint() {
  sha256sum "$KILN_ROOT/pyproject.toml" | cut -d' ' -f1
}

install_venv() {
  local stamp="$KILN_STATE_DIR/pip-install.stamp"
  if [[ ! -x $KILN_VENV/bin/python ]]; then
    step "creating .venv"
    "${KILN_PYTHON:-python3}" -m venv "$KILN_VENV" ||
      die "could not create .venv" "install python3-venv (./kiln-dev install does) or set KILN_PYTHON"
    rm -f "$stamp"
  fi
  if [[ -f $stamp && $(cat "$stamp") == "$(pyproject_fingerprint)" ]]; then
    step ".venv: up to date with pyproject.toml"
    return 0
  fi
  step "pip install -e '.[dev]' (pyproject.toml changed since the last install)"
  "$KILN_VENV/bin/pip" install -q -e "${KILN_ROOT}[dev]" >"$KILN_STATE_DIR/pip-install.log" 2>&1 ||
    die "pip install failed (log: .kiln/pip-install.log)" "check the dependency lines in pyproject.toml, then re-run ./kiln-dev install"
  pyproject_fingerprint >"$stamp"
}

do_install() {
  install_apt_packages
  install_venv
}

cmd_install() {
  with_state_lock do_install
}
