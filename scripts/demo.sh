#!/usr/bin/env bash
# `make demo`: creates (or reuses) the local stand-in GPU host, a privileged systemd
# container from the Debian 12 stand-in image, gives it what a real server has and a
# container lacks (scripts/standin-host.sh: a block device for the model store and the CA
# bundle this machine trusts), runs site.yml against it with the local inventory, and ends
# with a chat request through the gateway. `demo.sh destroy` removes the stand-in host.
# `demo.sh setup` makes only what the demo uses (prerequisites, toolchain, model, the Debian 12
# stand-in image and the engine image), the independent steps side by side, and prints how
# long each took; everything is cached, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

readonly HOST=gpu-stack-demo
readonly IMAGE=localhost/gpu-stack/debian12:latest
# The stand-in's gateway and SSH ports, published on this machine's loopback only, and the
# operator account Ansible logs in as (inventories/local/hosts.yml says the same).
readonly GATEWAY=127.0.0.1:18080 SSH=127.0.0.1:18022 SSH_USER=ops
readonly SSH_DIR=build/demo/ssh
# The demo's API key (inventories/local/group_vars/gpu_hosts.yml): a demo value, not a secret.
readonly DEMO_KEY=demo-key-0123456789abcdef

step() {
  # step NAME CMD...: runs CMD, prints how long it took.
  local name=$1 start=$SECONDS
  shift
  "$@" || { echo "demo: set-up step '$name' failed" >&2; return 1; }
  echo "demo: set-up ${name}: $((SECONDS - start)) s"
}

if [[ ${1:-} == setup ]]; then
  begin=$SECONDS
  step prerequisites scripts/host-prereqs.sh
  # The toolchain and then the model download beside the stand-in base image (network and
  # dpkg bound); the engine build needs both (pip downloads its hashed source).
  step "toolchain and model" bash -c 'scripts/venv.sh && scripts/fetch-demo-model.sh' &
  toolchain=$!
  step "stand-in image" scripts/build-images.sh debian12
  wait "$toolchain"
  step "engine image" scripts/build-images.sh llama-cpp
  echo "demo: set-up done in $((SECONDS - begin)) s"
  exit 0
fi

if [[ ${1:-} == destroy ]]; then
  scripts/standin-host.sh release "$HOST"
  podman rm --force --time 10 "$HOST" >/dev/null 2>&1 && echo "demo: removed $HOST" || echo "demo: no $HOST to remove"
  rm -rf "$SSH_DIR"
  exit 0
fi

total=$SECONDS
# A running stand-in is reused (the second `make demo` changes nothing); one from an older
# image, without the published ports, without its SSH key and known host key, or that no longer
# answers is replaced.
image_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
running=$(podman container inspect --format '{{.State.Running}} {{.Image}}' "$HOST" 2>/dev/null || true)
if [[ $running != "true $image_id" || $(podman port "$HOST" 8080/tcp 2>/dev/null) != "$GATEWAY" \
      || $(podman port "$HOST" 22/tcp 2>/dev/null) != "$SSH" || ! -s $SSH_DIR/known_hosts ]] \
   || ! podman exec "$HOST" true >/dev/null 2>&1; then
  scripts/standin-host.sh release "$HOST" >/dev/null 2>&1 || true
  podman rm --force "$HOST" >/dev/null 2>&1 || true
  podman run --detach --name "$HOST" --hostname "$HOST" --systemd=always --privileged \
    --cgroupns=host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --publish "${GATEWAY}:8080" --publish "${SSH}:22" "$IMAGE" /sbin/init >/dev/null
  echo "demo: started the stand-in host $HOST from $IMAGE"
  # A key pair for this stand-in, the operator account it authorises, and the stand-in's own
  # host key in known_hosts: Ansible reaches it over SSH with host key checking on.
  rm -rf "$SSH_DIR"
  mkdir -p "$SSH_DIR"
  chmod 0700 "$SSH_DIR"
  ssh-keygen -q -t ed25519 -N '' -C "gpu-stack-demo operator" -f "$SSH_DIR/id_ed25519"
  host_key=$(podman exec -i "$HOST" sh -s "$SSH_USER" "$(cat "$SSH_DIR/id_ed25519.pub")" <scripts/standin-init.sh)
  echo "[${SSH%:*}]:${SSH##*:} ${host_key##*$'\n'}" >"$SSH_DIR/known_hosts.part"
  mv "$SSH_DIR/known_hosts.part" "$SSH_DIR/known_hosts"
  echo "demo: $HOST answers SSH on $SSH as $SSH_USER (key and known_hosts in $SSH_DIR)"
else
  echo "demo: reusing the running stand-in host $HOST"
fi
scripts/standin-host.sh prepare "$HOST" | sed 's/^/demo: stand-in /'

start=$SECONDS
ansible-playbook site.yml -i inventories/local/hosts.yml "$@"
echo "demo: site.yml took $((SECONDS - start)) s"

# The proof: a chat request through the gateway, with and without the key.
question='What is the capital of France? Answer in one sentence.'
body=$(printf '{"model":"smollm2-135m-instruct","max_tokens":32,"temperature":0,"messages":[{"role":"user","content":"%s"}]}' "$question")
answer=$(curl -sf --max-time 120 "http://${GATEWAY}/v1/chat/completions" -H "Authorization: Bearer ${DEMO_KEY}" \
  -H 'Content-Type: application/json' --data "$body") || { echo "demo: the gateway did not answer" >&2; exit 1; }
without_key=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://${GATEWAY}/v1/models")
echo
echo "demo: endpoint   http://${GATEWAY}/v1 (OpenAI-compatible, model smollm2-135m-instruct)"
echo "demo: question   ${question}"
echo "demo: answer     $(python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"].strip())' <<<"$answer")"
echo "demo: no key     HTTP ${without_key}"
echo "demo: try it     curl http://${GATEWAY}/v1/chat/completions -H 'Authorization: Bearer ${DEMO_KEY}' -H 'Content-Type: application/json' --data '${body}'"
echo "demo: total      $((SECONDS - total)) s"
[[ $without_key == 401 ]] || { echo "demo: a request without the key got ${without_key}, not 401" >&2; exit 1; }
