#!/usr/bin/env bash
# Builds the local images, with no registry:
#   debian12, debian13  stand-in GPU hosts (systemd, python3, sudo): debootstrap + podman import;
#   llama-cpp           the llama.cpp server the demo serves with, built on the debian12 base
#                       from images/llama_cpp/ (about 10 minutes on 2 cores, cached).
# An image is rebuilt only when its recipe changes: the tag is a hash of the recipe (for the
# server image: its build files and the base tag), and `:latest` points at the current one.
#   usage: build-images.sh [debian12|debian13|llama-cpp ...]   (default: all)
set -euo pipefail

readonly REPO="localhost/gpu-stack"
readonly INCLUDE="python3,python3-apt,systemd,systemd-sysv,sudo,dbus,ca-certificates,runc"
declare -A SUITES=([debian12]=bookworm [debian13]=trixie)

mirror() {
  # The Debian mirror this machine's apt sources use, so the build works behind a local mirror.
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)
  echo "${GPU_STACK_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

recipe_hash() {
  # The stand-in recipe: the package set, the suites and the build steps themselves.
  { echo "$INCLUDE"; declare -p SUITES; declare -f build; } | sha256sum | cut -c1-12
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
  # The package lists stay, as on an installed server, so check mode can resolve packages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  # No units that cannot work in a container.
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-remount-fs.service"
  ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
  echo "${name}-standin" > "$rootfs/etc/hostname"
  # What podman inside a stand-in needs on this kind of build host (the same settings as the
  # host's own, see host-prereqs.sh): runc (crun refuses hybrid cgroups; the package is in the
  # image), cgroupfs and grantable ulimits. A real GPU host
  # has its own podman configuration; this describes the stand-in's environment, not a role.
  mkdir -p "$rootfs/etc/containers/containers.conf.d"
  printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
    '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' \
    > "$rootfs/etc/containers/containers.conf.d/50-standin.conf"
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
    - "${REPO}/${name}:${tag}" >/dev/null
  podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
  echo "images: built ${REPO}/${name}:${tag} in $((SECONDS - start)) s"
}


build_server() {
  local name=llama-cpp dir=images/llama_cpp base tag
  base="${REPO}/debian12:$(recipe_hash)-${SUITES[debian12]}"
  podman image exists "$base" || build debian12
  tag=$( { cat "$dir/Containerfile" "$dir/requirements.txt"; echo "$base"; } | sha256sum | cut -c1-12)
  if podman image exists "${REPO}/${name}:${tag}"; then
    podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
    echo "images: ${REPO}/${name}:${tag} is current (recipe unchanged)"
    save_archive "${REPO}/${name}:${tag}" "$tag"
    return
  fi
  echo "images: building ${REPO}/${name}:${tag} from ${dir} (llama.cpp compiles: about 10 minutes)"
  local start=$SECONDS log
  log=$(mktemp /var/tmp/gpu-stack-build.XXXXXX)
  local ca=()
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/run/build-host-ca.crt:ro)
  if ! podman build --quiet --network host "${ca[@]}" --build-arg "BASE_IMAGE=${base}" \
       --tag "${REPO}/${name}:${tag}" "$dir" >"$log" 2>&1; then
    tail -n 40 "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
  podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
  echo "images: built ${REPO}/${name}:${tag} in $((SECONDS - start)) s"
  save_archive "${REPO}/${name}:${tag}" "$tag"
}

save_archive() {
  # Stand-in hosts have their own image store: the serving role loads this archive there
  # (serving_image_archive), as an air-gapped estate would.
  local ref=$1 tag=$2 dir
  dir=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}/images
  if [[ ! -f $dir/llama-cpp-$tag.tar ]]; then
    mkdir -p "$dir"
    rm -f "$dir"/llama-cpp-*.tar
    # docker-archive keeps the name: the host loads it as ${REPO}/llama-cpp:latest.
    podman save --quiet --format docker-archive -o "$dir/llama-cpp-$tag.tar.part" "${REPO}/llama-cpp:latest"
    mv "$dir/llama-cpp-$tag.tar.part" "$dir/llama-cpp-$tag.tar"
    echo "images: saved $ref to $dir/llama-cpp-$tag.tar"
  fi
  mkdir -p build/images
  ln -sfn "$dir/llama-cpp-$tag.tar" build/images/llama-cpp.tar
}

cd "$(dirname "$0")/.."
targets=("$@")
((${#targets[@]})) || targets=(debian12 debian13 llama-cpp)
for target in "${targets[@]}"; do
  if [[ $target == llama-cpp ]]; then
    build_server
    continue
  fi
  [[ -n ${SUITES[$target]:-} ]] || { echo "images: unknown image '$target' (known: ${!SUITES[*]} llama-cpp)" >&2; exit 2; }
  build "$target"
done
