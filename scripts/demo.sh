#!/usr/bin/env bash
# `make demo`: creates (or reuses) the local stand-in GPU host, a privileged systemd
# container from the Debian 12 stand-in image, and runs site.yml against it with the local
# inventory. `demo.sh destroy` removes the stand-in host.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

readonly HOST=gpu-stack-demo
readonly IMAGE=localhost/gpu-stack/debian12:latest

if [[ ${1:-} == destroy ]]; then
  podman rm --force --time 10 "$HOST" >/dev/null 2>&1 && echo "demo: removed $HOST" || echo "demo: no $HOST to remove"
  exit 0
fi

if [[ $(podman container inspect --format '{{.State.Running}}' "$HOST" 2>/dev/null) != true ]]; then
  podman rm --force "$HOST" >/dev/null 2>&1 || true
  podman run --detach --name "$HOST" --hostname "$HOST" --systemd=always --privileged \
    --cgroupns=host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw "$IMAGE" /sbin/init >/dev/null
  echo "demo: started the stand-in host $HOST from $IMAGE"
  for _ in $(seq 60); do
    state=$(podman exec "$HOST" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
  done
else
  echo "demo: reusing the running stand-in host $HOST"
fi

start=$SECONDS
ansible-playbook site.yml -i inventories/local/hosts.yml "$@"
echo "demo: site.yml took $((SECONDS - start)) s"
