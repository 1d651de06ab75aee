#!/usr/bin/env bash
# Runs `ansible-test sanity` offline on a copy of the collection's files (ansible-test needs
# the tree at .../ansible_collections/llmops/gpu_stack). ansible-test fetches a get-pip
# script from the internet to bootstrap its venvs; a small local stand-in that runs
# ensurepip and then pip with the same arguments is written to its cache instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv_python="$root/.venv/bin/python"

scripts/offline-get-pip.sh "$venv_python"

dest="$root/build/sanity/ansible_collections/llmops/gpu_stack"
rm -rf "$dest"
mkdir -p "$dest"
# Exactly the files git would ship: tracked plus untracked-but-not-ignored.
git ls-files -z --cached --others --exclude-standard | grep -zv '^build/' \
  | (cd "$root" && tar --null -T - -cf -) | tar -C "$dest" -xf -
cd "$dest"
# ansible-test refuses to run outside a git work tree it cannot read; a throwaway repo of the
# copy keeps it on exactly these files.
git init -q . && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
"$root/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
