#!/usr/bin/env bash
# Builds the stand-in GPU host images (Debian 12 and 13 with systemd, python3, sudo) with
# debootstrap and `podman import`. No registry is needed. An image is rebuilt only when its
# recipe (this script) changes: the tag is a hash of the recipe, and `:latest` points at it.
#   usage: build-images.sh [debian12|debian13 ...]   (default: both)
set -euo pipefail

readonly REPO="localhost/gpu-stack"
readonly INCLUDE="python3,python3-apt,systemd,systemd-sysv,sudo,dbus,ca-certificates"
declare -A SUITES=([debian12]=bookworm [debian13]=trixie)

mirror() {
  # The Debian mirror this machine's apt sources use, so the build works behind a local mirror.
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)
  echo "${GPU_STACK_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

recipe_hash() {
  sha256sum "$0" | cut -c1-12
}

build() {
  local name=$1 suite=${SUITES[$1]} tag rootfs
  tag="$(recipe_hash)-${suite}"
  if podman image exists "${REPO}/${name}:${tag}"; then
    podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
    echo "images: ${REPO}/${name}:${tag} is current (recipe unchanged)"
    return
  fi
  rootfs=$(mktemp -d /var/tmp/gpu-stack-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  echo "images: building ${REPO}/${name}:${tag} (debootstrap ${suite} from $(mirror))"
  local start=$SECONDS
  debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$rootfs" "$(mirror)" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; return 1; }
  rm -f "$rootfs.log"
  # No units that cannot work in a container.
  # The package lists stay, as on an installed server, so check mode can resolve packages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-remount-fs.service"
  ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
  echo "${name}-standin" > "$rootfs/etc/hostname"
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
    - "${REPO}/${name}:${tag}" >/dev/null
  podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
  echo "images: built ${REPO}/${name}:${tag} in $((SECONDS - start)) s"
}

targets=("$@")
((${#targets[@]})) || targets=(debian12 debian13)
for target in "${targets[@]}"; do
  [[ -n ${SUITES[$target]:-} ]] || { echo "images: unknown image '$target' (known: ${!SUITES[*]})" >&2; exit 2; }
  build "$target"
done
