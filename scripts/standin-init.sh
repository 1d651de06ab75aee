#!/bin/sh
# Runs inside a new stand-in host (podman exec -i NAME sh -s USER PUBKEY < this file): waits for
# systemd and sshd, authorises the run's public key for USER (created with passwordless sudo
# when it is not root, as an operator account on a real server), and prints the host's
# ed25519 key for the run's known_hosts file.
set -eu
user=$1 pubkey=$2
for _ in $(seq 120); do
  state=$(systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 0.5
done
case $state in running|degraded) ;; *) echo "systemd did not finish starting (state: ${state:-none})" >&2; exit 1 ;; esac
if [ "$user" = root ]; then
  home=/root
else
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$user" > "/etc/sudoers.d/50-$user"
  chmod 0440 "/etc/sudoers.d/50-$user"
  home=$(getent passwd "$user" | cut -d: -f6)
fi
install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.ssh"
printf '%s\n' "$pubkey" > "$home/.ssh/authorized_keys"
chown "$user:$(id -gn "$user")" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
for _ in $(seq 60); do
  systemctl is-active --quiet ssh && [ -s /etc/ssh/ssh_host_ed25519_key.pub ] && break
  sleep 0.5
done
systemctl is-active --quiet ssh || { echo "sshd is not running" >&2; systemctl status --no-pager ssh >&2 || true; exit 1; }
cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub
