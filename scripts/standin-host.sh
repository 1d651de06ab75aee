#!/usr/bin/env bash
# What a real server has and a stand-in container lacks, given to a stand-in host from the
# machine that runs podman (used by `make demo` and molecule/site):
#   - a block device for the model store: a sparse image file inside the container attached
#     to a loop device, reachable at /dev/gpu-stack-models (model_storage formats it ext4 and
#     mounts it by UUID);
#   - the CA bundle this machine trusts, at /usr/local/share/gpu-stack-ca-bundle.pem, so that
#     a host behind the same TLS-inspecting proxy reaches PyPI (conda_env_ca_bundle).
# Loop devices belong to the machine's kernel: `release` unmounts and detaches them and must
# run before the container is removed.
#   standin-host.sh prepare|release CONTAINER [SIZE]
set -euo pipefail
action=${1:?usage: standin-host.sh prepare|release CONTAINER [SIZE]}
host=${2:?usage: standin-host.sh prepare|release CONTAINER [SIZE]}
size=${3:-2G}
readonly image=/var/lib/gpu-stack-standin/models.img link=/dev/gpu-stack-models
readonly bundle=/usr/local/share/gpu-stack-ca-bundle.pem

case $action in
  prepare)
    src=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    if ! podman exec "$host" cmp -s "$bundle" - <"$src" 2>/dev/null; then
      podman exec -i "$host" sh -c "mkdir -p ${bundle%/*} && cat >$bundle && chmod 0644 $bundle" <"$src"
      echo "changed $bundle"
    fi
    # In a container /dev holds only the loop nodes that existed when it started: a missing
    # node is created (block major 7). The link is made again after a restart.
    podman exec -i "$host" sh -s "$image" "$size" "$link" <<'EOF'
set -eu
image=$1 size=$2 link=$3
dev=$(losetup --noheadings --output NAME --associated "$image" 2>/dev/null | head -n1)
state=ok
if [ -z "$dev" ]; then
  mkdir -p "${image%/*}"
  [ -e "$image" ] || truncate -s "$size" "$image"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    dev=$(losetup --find)
    [ -e "$dev" ] || mknod "$dev" b 7 "${dev#/dev/loop}"
    losetup "$dev" "$image" 2>/dev/null && break
    dev=""
    sleep "$attempt"
  done
  [ -n "$dev" ] || { echo "no free loop device for $image" >&2; exit 1; }
  state=changed
fi
[ "$(readlink "$link" 2>/dev/null)" = "$dev" ] || { ln -sfn "$dev" "$link"; state=changed; }
echo "$state $link -> $dev"
EOF
    ;;
  release)
    podman container exists "$host" || { echo "ok: no container $host"; exit 0; }
    podman exec -i "$host" sh -s "$image" <<'EOF'
set -eu
image=$1
for dev in $(losetup --noheadings --output NAME --associated "$image" 2>/dev/null); do
  for target in $(findmnt --noheadings --output TARGET --source "$dev" 2>/dev/null); do
    umount --lazy "$target"
  done
  losetup --detach "$dev"
  echo "changed: detached $dev"
done
EOF
    ;;
  *)
    echo "standin-host.sh: unknown action $action (prepare or release)" >&2
    exit 2
    ;;
esac
