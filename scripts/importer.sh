#!/usr/bin/env bash
# Runs galaxy-importer (requirements/importer.txt, pinned) on the collection tarball as Galaxy
# does on an upload: ansible-doc, ansible-lint (production profile), flake8 on the plugins, the
# changelog, the tags and meta/execution-environment.yml. Configuration:
# tests/sanity/galaxy-importer.cfg (offline, no ansible-test, no container).
# The collections galaxy.yml declares are made visible to the importer's ansible-lint (taken,
# as in the install check, from the current `ansible` package: requirements/deps-newest.txt), so
# that its syntax check resolves their modules as on a host where the collection is installed.
# Fails on any warning or error in the importer's output.
#   usage: importer.sh [TARBALL]   (default: build/dist/llmops-gpu_stack-<version>.tar.gz)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
cache=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}

version=$(sed -n 's/^version: *//p' galaxy.yml)
tarball=$(realpath "${1:-build/dist/llmops-gpu_stack-$version.tar.gz}")
[[ -f $tarball ]] || { echo "importer: no $tarball (make build)" >&2; exit 1; }
venv=$(scripts/tool-venv.sh importer) || exit 1

work="$root/build/importer"
rm -rf "$work"
mkdir -p "$work/tmp"

# The declared dependencies, from the `ansible` package wheel (downloaded by hash if needed).
reqs=requirements/deps-newest.txt
wheel_version=$(sed -n 's/^ansible==\([0-9.]*\).*/\1/p' "$reqs")
wheel="$cache/ansible-wheels/ansible-$wheel_version-py3-none-any.whl"
if [[ ! -f $wheel ]]; then
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: --python-version 3.13 \
    -r "$reqs" -d "$cache/ansible-wheels" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$venv/bin/python" scripts/install_check.py --deps-only --source "$root" --wheel "$wheel" \
  --work "$work/deps" --dep-cache "$cache/dep-tarballs/ansible-$wheel_version" >"$work/deps.log" 2>&1 \
  || { cat "$work/deps.log"; echo "importer: could not install the declared dependencies" >&2; exit 1; }

start=$SECONDS
(
  cd "$work" || exit 1
  # As on Galaxy: no ansible.cfg (the Makefile exports the checkout's, whose roles_path and
  # collections_path would let ansible-lint see the checkout instead of the tarball).
  while IFS='=' read -r name _value; do unset "$name"; done < <(env | grep -E '^ANSIBLE_[A-Z_]*=')
  PATH="$venv/bin:$PATH" PYTHONPATH="$work/deps/collections" \
    GALAXY_IMPORTER_CONFIG="$root/tests/sanity/galaxy-importer.cfg" \
    GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP="$work/tmp" \
    "$venv/bin/python" -m galaxy_importer.main "$tarball"
) >"$work/output.txt" 2>&1
rc=$?
grep -v '^$' "$work/output.txt" | grep -vE '^(Loading|Linting) ' || true
problems=$(grep -cE '^(WARNING|ERROR|CRITICAL)' "$work/output.txt")
echo "importer: galaxy-importer $(sed -n 's/^Importing with galaxy-importer //p' "$work/output.txt") on $(basename "$tarball"):" \
  "exit $rc, $problems warning(s) or error(s), $((SECONDS - start)) s (output: build/importer/output.txt)"
((rc == 0 && problems == 0))
