# shellcheck shell=bash
# Base images: Debian bookworm minbase + python3 for amd64 and arm64, built with debootstrap,
# cached as rootfs tarballs, imported into Docker and pushed to the local registry.

BASE_CACHE_DIR="$KILN_CACHE_DIR/base"
BASE_ARCHITECTURES=(amd64 arm64)
BASE_REPOSITORY=kiln/base

base_local_image() { printf 'kiln-base:bookworm-%s' "$1"; }
base_registry_image() { printf '%s/%s:bookworm-%s' "$REGISTRY_ADDRESS" "$BASE_REPOSITORY" "$1"; }
base_tarball() { printf '%s/bookworm-%s.tar' "$BASE_CACHE_DIR" "$1"; }

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

build_base_rootfs() { # arch: leaves a tarball in the cache
  local arch=$1 tarball log work
  tarball=$(base_tarball "$arch")
  if [[ -s $tarball ]]; then
    step "base rootfs $arch: cached ($tarball)"
    return 0
  fi
  require_root services
  mkdir -p "$BASE_CACHE_DIR"
  log="$KILN_STATE_DIR/debootstrap-$arch.log"
  work=$(mktemp -d "$BASE_CACHE_DIR/.build-$arch.XXXXXX")
  step "debootstrap bookworm $arch (amd64 ≈1 min, arm64 ≈3 min under QEMU; log: .kiln/debootstrap-$arch.log)"
  # A foreign arch runs its second stage through binfmt/qemu, registered before this step.
  debootstrap --arch "$arch" --variant=minbase --include=python3,python3-venv \
    bookworm "$work/rootfs" "$(debian_mirror)" >"$log" 2>&1 ||
    die "debootstrap $arch failed" "read the end of .kiln/debootstrap-$arch.log" \
      "then remove $work and re-run ./kiln-dev services"
  # Package caches are rebuilt by whoever installs into the image; keep the layer small.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
  rm -rf "$work"
  note "cached $tarball ($(du -h "$tarball" | cut -f1))"
}

image_architecture() { docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null || true; }

verify_base_image() { # image arch: it runs, on the right machine type, with python3
  local image=$1 arch=$2 machine
  machine=$(docker run --rm --platform "linux/$arch" "$image" uname -m) ||
    die "$image does not start" "for arm64 check binfmt: cat /proc/sys/fs/binfmt_misc/qemu-aarch64"
  [[ $machine == "$(expected_uname_machine "$arch")" ]] ||
    die "$image runs as $machine, expected $(expected_uname_machine "$arch")" \
      "docker rmi $image and re-run ./kiln-dev services"
  [[ $(docker run --rm --platform "linux/$arch" "$image" python3 -c 'print(1)') == 1 ]] ||
    die "python3 does not run in $image" "rm $(base_tarball "$arch") and re-run ./kiln-dev services"
}

import_base_image() { # arch
  local arch=$1 image
  image=$(base_local_image "$arch")
  if [[ $(image_architecture "$image") == "$arch" ]]; then
    step "base image $image: present"
    return 0
  fi
  step "docker import $image"
  docker import --platform "linux/$arch" "$(base_tarball "$arch")" "$image" >/dev/null
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
  verify_base_image "$image" "$arch"
  note "$image: $(image_architecture "$image"), runs $(expected_uname_machine "$arch") with python3"
}

push_base_image() { # arch: to the local registry, so workers on other hosts can pull it
  local arch=$1 local_image remote_image image_id stamp
  local_image=$(base_local_image "$arch")
  remote_image=$(base_registry_image "$arch")
  image_id=$(docker image inspect -f '{{.Id}}' "$local_image")
  stamp="$REGISTRY_DIR/pushed-bookworm-$arch"
  if [[ -f $stamp && $(cat "$stamp") == "$image_id" ]] &&
    registry_has_tag "$BASE_REPOSITORY" "bookworm-$arch"; then
    step "registry $remote_image: up to date"
    return 0
  fi
  step "docker push $remote_image"
  docker tag "$local_image" "$remote_image"
  docker push -q "$remote_image" >/dev/null ||
    die "docker push $remote_image failed" "read $REGISTRY_LOG"
  echo "$image_id" >"$stamp"
}

import_and_push_base_image() { # arch: from its cached rootfs tarball
  import_base_image "$1"
  push_base_image "$1"
}

ensure_base_images() {
  local arch
  for arch in "${BASE_ARCHITECTURES[@]}"; do
    build_base_rootfs "$arch"
    import_and_push_base_image "$arch"
  done
}
