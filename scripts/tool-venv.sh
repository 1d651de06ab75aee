#!/usr/bin/env bash
# Creates (once) the virtual environment of one hashed requirements file and prints its path.
#   usage: tool-venv.sh NAME        (requirements/NAME.txt; PYTHON=python3 by default)
# The environment lives in the same cache as the toolchain's (scripts/venv.sh), keyed on the
# requirements file and the Python version, so an unchanged set is reused by every clone and
# CI run. Everything is installed with --require-hashes and --no-deps: exactly the reviewed set.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: tool-venv.sh NAME}
reqs=requirements/$name.txt
python=${PYTHON:-python3}
[[ -f $reqs ]] || { echo "tool-venv: no $reqs" >&2; exit 2; }
cache=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}
key=$( { cat "$reqs"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
venv="$cache/venv-$name-$key"

if [[ ! -x $venv/bin/python || ! -f $venv/.complete ]]; then
  echo "tool-venv: creating $venv from $reqs" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  # (This machine's pip configuration names local indexes that may not exist: their warnings go.)
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
      -r "$reqs" >"$venv.log" 2>&1; then
    cat "$venv.log" >&2
    echo "tool-venv: pip install failed" >&2
    exit 1
  fi
  grep -v '^WARNING: Location' "$venv.log" >&2 || true
  rm -f "$venv.log"
  "$venv/bin/python" -m pip check >&2
  touch "$venv/.complete"
fi
echo "$venv"
