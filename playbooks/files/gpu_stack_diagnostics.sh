#!/usr/bin/env bash
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Writes a GPU host's environment snapshot into a directory, for playbooks/diagnostics.yml:
#   gpu_stack_diagnostics.sh DIR [SERVING_STATE_DIR] [ENVS_DIR]
# versions.txt, packages.txt, serving-state.json, units.txt, engine-logs.txt,
# gateway-errors.txt and gateway-config.txt. Every command's output is written under a
# "## command" line; a command that fails or is missing leaves "(exit N)" and the others still
# run, since a broken host is what the snapshot is for. Reads only; writes only under DIR.
# Secrets are removed afterwards by the playbook, before anything leaves the host.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 3 || ! -d $1 ]]; then
  echo "usage: $0 DIR [SERVING_STATE_DIR] [ENVS_DIR] (DIR must exist; got: $*)" >&2
  exit 2
fi
d=$1
state_dir=${2:-/var/lib/gpu_stack/serving}
envs_dir=${3:-/opt/gpu_stack/envs}

run() { echo "## $*"; "$@" 2>&1 || echo "(exit $?)"; echo; }

# Each file in a glob that exists, with a header (an unmatched glob gives nothing).
show_files() {
  local f
  for f in "$@"; do
    [[ -f $f ]] && { echo "## $f"; cat "$f"; echo; }
  done
}

{
  run uname -a
  run cat /etc/os-release
  run cat /proc/driver/nvidia/version
  run nvidia-smi --query-gpu=index,name,driver_version,vbios_version --format=csv
  run nvcc --version
  run ls -l /usr/local/cuda /etc/alternatives/cuda
  run nvidia-ctk --version
  run podman --version
  run docker --version
  run nginx -v
  run python3 --version
} > "$d/versions.txt"

{
  if command -v dpkg-query >/dev/null; then
    run dpkg-query -W -f '${Package} ${Version} ${Architecture}\n'
  else
    run rpm -qa --qf '%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\n'
  fi
  for py in "$envs_dir"/*/bin/python; do
    [[ -x $py ]] && run "$py" -m pip list --format=freeze
  done
  run podman images --digests
} > "$d/packages.txt"

show_files "$state_dir"/*.json > "$d/serving-state.json"

{
  run systemctl list-units --all --no-pager 'gpu-stack-*' 'nginx*' 'nvidia*'
  run systemctl list-timers --all --no-pager 'gpu-stack-*'
  run podman ps --all
  for unit in $(systemctl list-units --all --plain --no-legend 'gpu-stack-serving-*.service' 2>/dev/null | awk '{print $1}'); do
    run systemctl show --no-pager -p ActiveState -p SubState -p NRestarts -p InvocationID \
      -p ExecMainStatus -p UnitFileState "$unit"
  done
} > "$d/units.txt"

run journalctl --no-pager --lines 300 --unit 'gpu-stack-serving-*' > "$d/engine-logs.txt"

{
  for f in /var/log/nginx/gpu-stack-*-error.log; do
    [[ -f $f ]] && { echo "## $f (last 200 lines)"; tail -n 200 "$f"; echo; }
  done
  for f in /var/log/nginx/gpu-stack-*-access.log; do
    [[ -f $f ]] && { echo "## $f (last 100 requests with status >= 500)"; tail -n 100000 "$f" \
      | jq -c 'select(.status >= 500)' 2>&1 | tail -n 100; echo; }
  done
} > "$d/gateway-errors.txt"

show_files /etc/nginx/conf.d/gpu-stack-*.conf > "$d/gateway-config.txt"
exit 0
