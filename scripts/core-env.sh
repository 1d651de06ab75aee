# shellcheck shell=bash
# Sourced by core-matrix.sh and install-check.sh: where each supported ansible-core runs.
# 2.16 to 2.19 run on this machine's Python 3.11. 2.20 and later need Python >= 3.12: they run
# in a throwaway container of the Debian 13 stand-in image (Python 3.13) with python3-venv and
# git added, committed once per base image as localhost/gpu-stack/core-matrix:<base id>. The
# checkout and the cache are mounted at their own paths, so paths are the same on both sides.

core_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
core_cache=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}
readonly CORE_BASE_IMAGE=localhost/gpu-stack/debian13:latest
readonly CORE_MATRIX_IMAGE=localhost/gpu-stack/core-matrix
# PyPI is reached through this machine's CA bundle (pip's own configuration names it).
readonly CORE_HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}

# core_in_container VERSION: true when that ansible-core needs the container.
core_in_container() {
  [[ $(printf '%s\n' "$1" 2.19 | sort -V | tail -n1) != 2.19 ]]
}

# core_image: prints the container image's name, building it first if needed.
core_image() {
  local base_id tag name
  base_id=$(podman image inspect --format '{{.Id}}' "$CORE_BASE_IMAGE" 2>/dev/null) || {
    echo "core-env: $CORE_BASE_IMAGE is missing: run make images" >&2; return 1; }
  tag="$CORE_MATRIX_IMAGE:${base_id:0:12}"
  if ! podman image exists "$tag"; then
    name="gpu-stack-core-matrix-build-$$"
    echo "core-env: building $tag (python3-venv and git on the Debian 13 stand-in)" >&2
    podman run --name "$name" -v "$CORE_HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro" "$CORE_BASE_IMAGE" bash -c '
      set -e
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends python3-venv git >/dev/null
      apt-get clean
      rm -rf /var/lib/apt/lists/*
      printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndisable-pip-version-check = true\n" >/etc/pip.conf
    ' >&2 2> >(grep -v 'level=warning msg="Failed to add conmon' >&2) || { podman rm -f "$name" >/dev/null 2>&1; return 1; }
    podman commit -q "$name" "$tag" >/dev/null && podman rm "$name" >/dev/null || return 1
  fi
  echo "$tag"
}

# core_run VERSION DIR CMD...: runs CMD in DIR with the Python that VERSION needs (on this
# machine, or in the container with its own ~/.ansible kept in the cache).
core_run() {
  local version=$1 dir=$2 image
  shift 2
  if ! core_in_container "$version"; then
    (cd "$dir" && "$@")
    return
  fi
  image=$(core_image) || return 1
  mkdir -p "$core_cache/ansible-home-$version"
  podman run --rm --network host \
    -v "$CORE_HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro" \
    -v "$core_root:$core_root" -v "$core_cache:$core_cache" \
    -v "$core_cache/ansible-home-$version:/root/.ansible" \
    -e HOME=/root -e "GPU_STACK_CACHE=$core_cache" -w "$dir" \
    "$image" "$@" 2> >(grep -v 'level=warning msg="Failed to add conmon' >&2)
}
