# shellcheck shell=bash
# Base images: Debian minbase + python3 for amd64 and arm64, built with debootstrap, cached as
# rootfs tarballs, imported into Docker and pushed to the local registry. Bookworm (CPython 3.11)
# is what `services` and `up` build; trixie (CPython 3.13) only when asked (`./kiln-dev test`
# proves both Pythons), with a build-only headers image per arch beside it, since Debian's
# python3 ships no headers (docs/compiler.md, "Target Python").

BASE_CACHE_DIR="$KILN_CACHE_DIR/base"
BASE_ARCHITECTURES=(amd64 arm64)
BASE_REPOSITORY=kiln/base
BASE_SUITE=bookworm # the example's base: every machine builds it
EXTRA_SUITES=(trixie)
HEADERS_REPOSITORY=kiln/python-headers
declare -A SUITE_PYTHON=([bookworm]=3.11 [trixie]=3.13)

# arch [suite]: the suite defaults to bookworm
base_local_image() { printf 'kiln-base:%s-%s' "${2:-$BASE_SUITE}" "$1"; }
base_registry_image() { printf '%s/%s:%s-%s' "$REGISTRY_ADDRESS" "$BASE_REPOSITORY" "${2:-$BASE_SUITE}" "$1"; }
base_tarball() { printf '%s/%s-%s.tar' "$BASE_CACHE_DIR" "${2:-$BASE_SUITE}" "$1"; }
# arch suite: the headers of the suite's CPython (libpython3.X-dev, include/ only)
headers_local_image() { printf 'kiln-python-headers:%s-%s' "$2" "$1"; }
headers_registry_image() { printf '%s/%s:%s-%s' "$REGISTRY_ADDRESS" "$HEADERS_REPOSITORY" "$2" "$1"; }
headers_tarball() { printf '%s/python-headers-%s-%s.tar' "$BASE_CACHE_DIR" "$2" "$1"; }

# The mirror this machine's apt already uses, so the code never names a host.
debian_mirror() {
  local mirror=${KILN_DEBIAN_MIRROR:-}
  local sources=/etc/apt/sources.list.d/debian.sources
  [[ -z $mirror && -r $sources ]] && mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources")
  [[ -z $mirror && -r /etc/apt/sources.list ]] &&
    mirror=$(awk '$1 == "deb" && $2 ~ /^http/ {print $2; exit}' /etc/apt/sources.list)
  [[ -n $mirror ]] || die "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources" \
    "set KILN_DEBIAN_MIRROR to your mirror's URL"
  printf '%s\n' "$mirror"
}

expected_uname_machine() { [[ $1 == arm64 ]] && echo aarch64 || echo x86_64; }

build_base_rootfs() { # arch [suite]: leaves a tarball in the cache
  local arch=$1 suite=${2:-$BASE_SUITE} tarball log work
  tarball=$(base_tarball "$arch" "$suite")
  if [[ -s $tarball ]]; then
    step "base rootfs $suite $arch: cached ($tarball)"
    return 0
  fi
  require_root services
  mkdir -p "$BASE_CACHE_DIR"
  log="$KILN_STATE_DIR/debootstrap-$suite-$arch.log"
  work=$(mktemp -d "$BASE_CACHE_DIR/.build-$suite-$arch.XXXXXX")
  step "debootstrap $suite $arch (amd64 ≈1 min, arm64 ≈3 min under QEMU; log: ${log#"$KILN_ROOT"/})"
  # A foreign arch runs its second stage through binfmt/qemu, registered before this step.
  debootstrap --arch "$arch" --variant=minbase --include=python3,python3-venv \
    "$suite" "$work/rootfs" "$(debian_mirror)" >"$log" 2>&1 ||
    die "debootstrap $suite $arch failed" "read the end of ${log#"$KILN_ROOT"/}" \
      "then remove $work and re-run ./kiln-dev services"
  # Package caches are rebuilt by whoever installs into the image; keep the layer small.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
  rm -rf "$work"
  note "cached $tarball ($(du -h "$tarball" | cut -f1))"
}

image_architecture() { docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null || true; }

build_headers_tarball() { # arch suite: the suite's libpython3.X-dev:<arch>, include/ only
  local arch=$1 suite=$2 python=${SUITE_PYTHON[$2]} tarball log work deb
  tarball=$(headers_tarball "$arch" "$suite")
  if [[ -s $tarball ]]; then
    step "python $python headers $suite $arch: cached ($tarball)"
    return 0
  fi
  require_root services
  mkdir -p "$BASE_CACHE_DIR"
  log="$KILN_STATE_DIR/headers-$suite-$arch.log"
  work=$(mktemp -d "$BASE_CACHE_DIR/.headers-$suite-$arch.XXXXXX")
  step "python $python headers for $suite $arch (debootstrap --download-only, ≈15 s; log: ${log#"$KILN_ROOT"/})"
  # debootstrap checks the suite's signed Release and every package's hash; only download:
  # no QEMU, and the .deb is unpacked below without running any maintainer script.
  debootstrap --download-only --arch "$arch" --variant=minbase --include="libpython$python-dev" \
    "$suite" "$work/download" "$(debian_mirror)" >"$log" 2>&1 ||
    die "downloading libpython$python-dev:$arch ($suite) failed" "read the end of ${log#"$KILN_ROOT"/}"
  deb=$(find "$work/download/var/cache/apt/archives" -name "libpython${python}-dev_*_$arch.deb" | head -1)
  [[ -n $deb ]] || die "no libpython$python-dev .deb for $arch in $suite" "read ${log#"$KILN_ROOT"/}"
  dpkg-deb -x "$deb" "$work/deb"
  mkdir -p "$work/image/usr"
  mv "$work/deb/usr/include" "$work/image/usr/include"
  tar --numeric-owner -C "$work/image" -cf "$work/headers.tar" .
  mv "$work/headers.tar" "$tarball"
  rm -rf "$work"
  note "cached $tarball ($(du -h "$tarball" | cut -f1), from $(basename "$deb"))"
}

verify_base_image() { # image arch: it runs, on the right machine type, with python3
  local image=$1 arch=$2 machine
  machine=$(docker run --rm --platform "linux/$arch" "$image" uname -m) ||
    die "$image does not start" "for arm64 check binfmt: cat /proc/sys/fs/binfmt_misc/qemu-aarch64"
  [[ $machine == "$(expected_uname_machine "$arch")" ]] ||
    die "$image runs as $machine, expected $(expected_uname_machine "$arch")" \
      "docker rmi $image and re-run ./kiln-dev services"
  [[ $(docker run --rm --platform "linux/$arch" "$image" python3 -c 'print(1)') == 1 ]] ||
    die "python3 does not run in $image" "docker rmi $image, remove its rootfs tarball and re-run ./kiln-dev services"
}

import_base_image() { # arch [suite]
  import_image "$(base_local_image "$1" "${2:-}")" "$1" "$(base_tarball "$1" "${2:-}")" verify_base_image
}

import_headers_image() { # arch suite: never run (it holds only headers), so nothing to verify
  import_image "$(headers_local_image "$1" "$2")" "$1" "$(headers_tarball "$1" "$2")" true
}

import_image() { # image arch tarball verify-command
  local image=$1 arch=$2 tarball=$3 verify=$4
  if [[ $(image_architecture "$image") == "$arch" ]]; then
    step "image $image: present"
    return 0
  fi
  step "docker import $image"
  docker import --platform "linux/$arch" "$tarball" "$image" >/dev/null
  if [[ $(image_architecture "$image") != "$arch" ]]; then
    # Debian's dockerd 20.10 records its own architecture whatever --platform says (measured
    # here even with --experimental on), so the arm64 image's config is rewritten.
    local imported_id
    imported_id=$(docker image inspect -f '{{.Id}}' "$image")
    note "dockerd recorded $(image_architecture "$image"); rewriting the image config to $arch"
    python3 "$KILN_ROOT/scripts/dev/set_image_architecture.py" "$image" "$arch" ||
      die "could not rewrite the architecture of $image" "docker rmi $image and re-run ./kiln-dev services"
    docker rmi "$imported_id" >/dev/null 2>&1 || true
  fi
  "$verify" "$image" "$arch"
  note "$image: $(image_architecture "$image")"
}

push_base_image() { # arch [suite]: to the local registry, so workers on other hosts can pull it
  local suite=${2:-$BASE_SUITE}
  push_image "$(base_local_image "$1" "$suite")" "$BASE_REPOSITORY" "$suite-$1"
}

push_image() { # local-image repository tag
  local local_image=$1 repository=$2 tag=$3 remote_image image_id stamp
  remote_image="$REGISTRY_ADDRESS/$repository:$tag"
  image_id=$(docker image inspect -f '{{.Id}}' "$local_image")
  stamp="$REGISTRY_DIR/pushed-${repository//\//-}-$tag"
  [[ $repository == "$BASE_REPOSITORY" && $tag == "$BASE_SUITE"-* ]] && stamp="$REGISTRY_DIR/pushed-$tag"
  if [[ -f $stamp && $(cat "$stamp") == "$image_id" ]] && registry_has_tag "$repository" "$tag"; then
    step "registry $remote_image: up to date"
    return 0
  fi
  step "docker push $remote_image"
  docker tag "$local_image" "$remote_image"
  docker push -q "$remote_image" >/dev/null ||
    die "docker push $remote_image failed" "read $REGISTRY_LOG"
  echo "$image_id" >"$stamp"
}

import_and_push_base_image() { # arch [suite]: from its cached rootfs tarball
  import_base_image "$1" "${2:-}"
  push_base_image "$1" "${2:-}"
}

import_and_push_headers_image() { # arch suite: from its cached headers tarball
  import_headers_image "$1" "$2"
  push_image "$(headers_local_image "$1" "$2")" "$HEADERS_REPOSITORY" "$2-$1"
}

ensure_base_images() {
  local arch
  for arch in "${BASE_ARCHITECTURES[@]}"; do
    build_base_rootfs "$arch"
    import_and_push_base_image "$arch"
  done
}

# Another suite's base and headers image, for the tests that prove its Python.
build_suite_tarballs() { # arch suite
  build_base_rootfs "$1" "$2"
  build_headers_tarball "$1" "$2"
}

import_and_push_suite_images() { # arch suite
  import_and_push_base_image "$1" "$2"
  import_and_push_headers_image "$1" "$2"
}

# `ref ref`: the headers images the registry holds for arch (KILN_PYTHON_HEADERS_IMAGES_<ARCH>).
headers_images_setting() { # arch
  local suite found=()
  for suite in "${EXTRA_SUITES[@]}"; do
    registry_has_tag "$HEADERS_REPOSITORY" "$suite-$1" && found+=("$(headers_registry_image "$1" "$suite")")
  done
  printf '%s' "${found[*]}"
}
