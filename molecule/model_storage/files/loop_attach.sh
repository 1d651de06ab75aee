#!/bin/sh
# Attaches IMAGE (created sparse, SIZE) to a free loop device and prints "changed DEVICE", or
# prints "ok DEVICE" when IMAGE is already attached. In a container /dev holds only the loop
# nodes that existed when it started, so a missing node is created (block major 7).
#   usage: loop_attach.sh IMAGE SIZE
set -eu
image=$1 size=$2
existing=$(losetup --noheadings --output NAME --associated "$image" 2>/dev/null | head -n1)
if [ -n "$existing" ]; then
  echo "ok $existing"
  exit 0
fi
[ -e "$image" ] || truncate -s "$size" "$image"
for _ in 1 2 3 4 5 6 7 8 9 10; do
  dev=$(losetup --find)
  [ -e "$dev" ] || mknod "$dev" b 7 "${dev#/dev/loop}"
  if losetup "$dev" "$image" 2>/dev/null; then
    echo "changed $dev"
    exit 0
  fi
  sleep 1
done
echo "no free loop device for $image" >&2
exit 1
