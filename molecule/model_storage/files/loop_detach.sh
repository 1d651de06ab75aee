#!/bin/sh
# Detaches every loop device backed by a file under DIR; prints "changed" if it detached any.
#   usage: loop_detach.sh DIR
set -eu
dir=$1
changed=no
for dev in $(losetup --noheadings --output NAME,BACK-FILE | awk -v d="$dir/" 'index($2, d) == 1 {print $1}'); do
  losetup --detach "$dev"
  changed=yes
done
[ "$changed" = yes ] && echo changed || echo ok
