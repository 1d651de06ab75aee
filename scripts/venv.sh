#!/usr/bin/env bash
# Creates the control-node virtual environment from requirements/control-node.txt and links
# it as .venv. The environment lives in a cache keyed on the requirements file and the Python
# version, so an unchanged toolchain is reused across clones and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly REQS=requirements/control-node.txt
readonly PYTHON=${PYTHON:-python3}
cache=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}
key=$( { cat "$REQS"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
venv="$cache/venv-$key"

if [[ -x $venv/bin/ansible-playbook && -f $venv/.complete ]]; then
  echo "venv: reusing $venv (requirements unchanged)"
else
  echo "venv: creating $venv from $REQS (about a minute: $(grep -c '^[a-z]' "$REQS") pinned packages)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$REQS"
  "$venv/bin/pip" check
  touch "$venv/.complete"
fi
ln -sfn "$venv" .venv

# The collection is used from this checkout through a link in the collections path.
mkdir -p build/collections/ansible_collections/llmops build/facts
ln -sfn ../../../.. build/collections/ansible_collections/llmops/gpu_stack
