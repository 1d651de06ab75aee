#!/usr/bin/env bash
# Builds the local images, with no registry:
#   debian12, debian13  stand-in GPU hosts (systemd, python3, sudo, sshd): debootstrap + podman
#                       import (about a minute each);
#   llama-cpp           llama.cpp's own server (llama-server) the demo and the tests serve with,
#                       compiled from the pinned source in images/llama_cpp/ on the debian12
#                       base (about 5 minutes of compiling on 2 idle cores);
#   llama-cpp-python    llama-cpp-python's server, the engine this collection used before,
#                       kept to compare against llama-server (about 4 minutes); not part of
#                       the default set, and nothing in make test or make demo uses it.
# An image is rebuilt only when its recipe changes: the tag is a hash of the recipe (for a
# server image: its build files and the base tag), and `:latest` points at the current one.
# Steps longer than a minute print their progress and an estimate every 30 s.
#   usage: build-images.sh [debian12|debian13|llama-cpp|llama-cpp-python ...]
#          (default: debian12 debian13 llama-cpp)
set -euo pipefail

readonly REPO="localhost/gpu-stack"
readonly INCLUDE="python3,python3-apt,systemd,systemd-sysv,sudo,dbus,ca-certificates,runc,openssh-server"
declare -A SUITES=([debian12]=bookworm [debian13]=trixie)
CACHE=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}

progress() {
  # progress LABEL ESTIMATE_S LOG CMD...: runs CMD with its output in LOG and, every 30 s,
  # prints how long it has run against the estimate (and the build's own percentage when the
  # log shows one, as cmake's does). Returns CMD's status.
  local label=$1 estimate=$2 log=$3 start=$SECONDS pid percent
  shift 3
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null || break
    percent=$(grep -oE '^\[ *[0-9]+%\]' "$log" 2>/dev/null | tail -n1 | tr -dc '0-9' || true)
    local took=$((SECONDS - start)) left
    if [[ -n $percent && $percent -gt 5 ]]; then
      left=$(( took * (100 - percent) / percent ))
      echo "images: ${label}: ${percent}% after ${took} s, about ${left} s left"
    else
      echo "images: ${label}: ${took} s of about ${estimate} s"
    fi
  done
  wait "$pid"
}

mirror() {
  # The Debian mirror this machine's own apt sources use (one-line or deb822 format), so the
  # build goes where the machine's packages come from; GPU_STACK_DEBIAN_MIRROR overrides it.
  if [[ -n ${GPU_STACK_DEBIAN_MIRROR:-} ]]; then
    echo "$GPU_STACK_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)
  if [[ -z $uri ]]; then
    echo "images: no Debian mirror in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)." >&2
    echo "images: set GPU_STACK_DEBIAN_MIRROR to the Debian archive to build from, e.g. GPU_STACK_DEBIAN_MIRROR=<mirror URL>/debian make images" >&2
    return 1
  fi
  echo "$uri"
}

recipe_hash() {
  # The stand-in recipe: the package set, the suites and the build steps themselves.
  { echo "$INCLUDE"; declare -p SUITES; declare -f build; } | sha256sum | cut -c1-12
}

build() {
  local name=$1 suite=${SUITES[$1]} tag rootfs source
  tag="$(recipe_hash)-${suite}"
  if podman image exists "${REPO}/${name}:${tag}"; then
    podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
    echo "images: ${REPO}/${name}:${tag} is current (recipe unchanged)"
    return
  fi
  source=$(mirror) || return 1
  rootfs=$(mktemp -d /var/tmp/gpu-stack-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  echo "images: building ${REPO}/${name}:${tag} (debootstrap ${suite} from ${source})"
  local start=$SECONDS
  progress "debootstrap ${suite}" 60 "$rootfs.log" \
    debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$rootfs" "$source" || {
    tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; return 1; }
  rm -f "$rootfs.log"
  # The package lists stay, as on an installed server, so check mode can resolve packages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  # No units that cannot work in a container.
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-remount-fs.service"
  ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
  echo "${name}-standin" > "$rootfs/etc/hostname"
  # Reached over SSH as real hosts are: keys only, and host keys made by each container at its
  # first start (the ones the package made at build time are removed), so every stand-in has
  # its own and the tests can check them.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  printf '%s\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitRootLogin prohibit-password' \
    'UseDNS no' 'MaxStartups 64:30:128' 'MaxSessions 64' > "$rootfs/etc/ssh/sshd_config.d/50-standin.conf"
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  printf '%s\n' '[Service]' 'ExecStartPre=' 'ExecStartPre=/usr/bin/ssh-keygen -A' 'ExecStartPre=/usr/sbin/sshd -t' \
    > "$rootfs/etc/systemd/system/ssh.service.d/50-standin-host-keys.conf"
  ln -sf /lib/systemd/system/ssh.service "$rootfs/etc/systemd/system/multi-user.target.wants/ssh.service"
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


fetch_source() {
  # The hashed source a server image is built from, downloaded once by pip (--require-hashes,
  # from this machine's own package index configuration) into the cache; prints its directory.
  local pins=$1 dir="$CACHE/sources"
  mkdir -p "$dir"
  if ! .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
       --require-hashes --requirement "$pins" --dest "$dir" >"$dir/pip.log" 2>&1; then
    grep -v 'WARNING: Location' "$dir/pip.log" | tail -n 20 >&2
    return 1
  fi
  echo "$dir"
}

build_server() {
  # build_server NAME DIR ESTIMATE_S: a server image from DIR/Containerfile on the debian12
  # base, then saved as an archive that stand-in hosts load.
  local name=$1 dir=$2 estimate=$3 base tag
  base="${REPO}/debian12:$(recipe_hash)-${SUITES[debian12]}"
  podman image exists "$base" || build debian12
  tag=$( { cat "$dir"/*; echo "$base"; } | sha256sum | cut -c1-12)
  if podman image exists "${REPO}/${name}:${tag}"; then
    podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
    echo "images: ${REPO}/${name}:${tag} is current (recipe unchanged)"
    save_archive "$name" "$tag"
    return
  fi
  local volumes=()
  if [[ -f $dir/source.txt ]]; then
    local src
    src=$(fetch_source "$dir/source.txt") || { echo "images: could not download the source pinned in $dir/source.txt" >&2; return 1; }
    volumes+=(--volume "$src:/run/src:ro")
  fi
  # Behind a TLS-inspecting proxy the build host's CA bundle is mounted for pip (build only).
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && volumes+=(--volume /etc/ssl/certs/ca-certificates.crt:/run/build-host-ca.crt:ro)
  echo "images: building ${REPO}/${name}:${tag} from ${dir} (about $((estimate / 60)) minutes on 2 idle cores)"
  local start=$SECONDS log
  log=$(mktemp /var/tmp/gpu-stack-build.XXXXXX)
  if ! progress "compiling ${name}" "$estimate" "$log" \
       podman build --network host "${volumes[@]}" --build-arg "BASE_IMAGE=${base}" \
       --tag "${REPO}/${name}:${tag}" "$dir"; then
    tail -n 40 "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
  podman tag "${REPO}/${name}:${tag}" "${REPO}/${name}:latest"
  echo "images: built ${REPO}/${name}:${tag} in $((SECONDS - start)) s"
  save_archive "$name" "$tag"
}

save_archive() {
  # Stand-in hosts have their own image store: the serving role loads this archive there
  # (serving_image_archive), as an air-gapped estate would.
  local name=$1 tag=$2 dir="$CACHE/images"
  if [[ ! -f $dir/$name-$tag.tar ]]; then
    mkdir -p "$dir"
    rm -f "$dir/$name"-[0-9a-f]*.tar
    # docker-archive keeps the name: the host loads it as ${REPO}/${name}:latest.
    podman save --quiet --format docker-archive -o "$dir/$name-$tag.tar.part" "${REPO}/${name}:latest"
    mv "$dir/$name-$tag.tar.part" "$dir/$name-$tag.tar"
    echo "images: saved ${REPO}/${name}:${tag} to $dir/$name-$tag.tar ($(du -m "$dir/$name-$tag.tar" | cut -f1) MB)"
  fi
  mkdir -p build/images
  ln -sfn "$dir/$name-$tag.tar" "build/images/$name.tar"
}

cd "$(dirname "$0")/.."
targets=("$@")
((${#targets[@]})) || targets=(debian12 debian13 llama-cpp)
for target in "${targets[@]}"; do
  case $target in
    llama-cpp) build_server llama-cpp images/llama_cpp 300 ;;
    llama-cpp-python) build_server llama-cpp-python images/llama_cpp_python 300 ;;
    *)
      [[ -n ${SUITES[$target]:-} ]] || {
        echo "images: unknown image '$target' (known: ${!SUITES[*]} llama-cpp llama-cpp-python)" >&2; exit 2; }
      build "$target"
      ;;
  esac
done
