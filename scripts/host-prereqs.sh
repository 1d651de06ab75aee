#!/usr/bin/env bash
# Installs what the test pipeline and the demo need on a Debian control/build machine:
# podman, runc, debootstrap and two containers.conf settings.
#   - runc, because crun refuses hosts with hybrid cgroups (v1 + v2);
#   - cgroupfs as cgroup manager, because the build host has no systemd as PID 1;
#   - nofile/nproc ulimits the host can grant without CAP_SYS_RESOURCE.
# Every change is printed; a machine already set up is left untouched.
set -euo pipefail

readonly PACKAGES=(podman runc debootstrap uidmap fuse-overlayfs make shellcheck git)
readonly CONF=/etc/containers/containers.conf
readonly MARK="# managed by llmops.gpu_stack scripts/host-prereqs.sh"

if [[ $(id -u) -ne 0 ]]; then
  echo "host-prereqs: needs root to install packages and write ${CONF}." >&2
  echo "host-prereqs: run: sudo $0" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "host-prereqs: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "host-prereqs: packages present (${PACKAGES[*]})"
fi

desired=$(cat <<CONF
${MARK}
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
)
if [[ -f $CONF ]] && [[ "$(cat "$CONF")" == "$desired" ]]; then
  echo "host-prereqs: ${CONF} already set"
else
  if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    cp -p "$CONF" "${CONF}.orig"
    echo "host-prereqs: saved the previous ${CONF} as ${CONF}.orig"
  fi
  mkdir -p "$(dirname "$CONF")"
  printf '%s\n' "$desired" > "$CONF"
  echo "host-prereqs: wrote ${CONF} (runc, cgroupfs, ulimits)"
fi

# Loop devices back the ext4/xfs model storage tests inside the stand-in hosts.
if [[ ! -e /dev/loop-control ]]; then
  echo "host-prereqs: /dev/loop-control is missing; storage scenarios will fail" >&2
fi
