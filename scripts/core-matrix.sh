#!/usr/bin/env bash
# Sanity (`ansible-test sanity`) and unit tests (pytest tests/unit) against each supported
# ansible-core, from requirements/core-<version>.txt (pinned and hashed).
#   usage: core-matrix.sh [VERSION ...]     (default: 2.16 2.21, the oldest and the newest)
# Where each version runs (this machine's Python 3.11, or Python 3.13 in a container of the
# Debian 13 stand-in image for 2.20 and later): scripts/core-env.sh.
# Each version gets its own copy of the collection's files under build/core-matrix/<version>/
# (ansible-test needs .../ansible_collections/llmops/gpu_stack and a git tree), and its own
# cached environments, so the versions never share state. Prints one line per version with the
# time of each part; results also go to build/core-matrix/results.txt. Fails if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=scripts/core-env.sh
source scripts/core-env.sh

# --run VERSION: one version's sanity and unit tests, in the current environment (the host or
# the container); run from the version's copy of the collection. Prints "sanity RC SECONDS" and
# "unit RC SECONDS" lines for the caller.
if [[ ${1:-} == --run ]]; then
  version=$2
  venv=$(scripts/tool-venv.sh "core-$version") || { echo "result sanity 1 0"; echo "result unit 1 0"; exit 1; }
  pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
  echo "result python $pyver $core"
  # ansible-test downloads get-pip to bootstrap its venvs: an offline stand-in instead.
  scripts/offline-get-pip.sh "$venv/bin/python" >&2
  start=$SECONDS
  "$venv/bin/ansible-test" sanity --venv --python "$pyver" --color no
  echo "result sanity $? $((SECONDS - start))"
  start=$SECONDS
  PYTHONPATH=$(cd ../../.. && pwd) "$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider
  echo "result unit $? $((SECONDS - start))"
  exit 0
fi

versions=("$@")
((${#versions[@]})) || versions=(2.16 2.21)

mkdir -p build/core-matrix
results=build/core-matrix/results.txt
: >"$results"
failed=0
for version in "${versions[@]}"; do
  [[ -f requirements/core-$version.txt ]] || { echo "core-matrix: no requirements/core-$version.txt" >&2; failed=1; continue; }
  echo "==== ansible-core $version"
  work="$core_root/build/core-matrix/$version"
  dest="$work/ansible_collections/llmops/gpu_stack"
  rm -rf "$work"
  mkdir -p "$dest"
  # Exactly the files git would ship: tracked plus untracked-but-not-ignored.
  git ls-files -z --cached --others --exclude-standard | grep -zv '^build/' \
    | while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -C "$dest" -xf -
  (cd "$dest" && git init -q . && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm matrix)
  log="$work/log.txt"
  start=$SECONDS
  where=host
  core_in_container "$version" && where=container
  core_run "$version" "$dest" scripts/core-matrix.sh --run "$version" 2>&1 | tee "$log"
  total=$((SECONDS - start))
  read -r _ _ s_rc s_t < <(grep -m1 '^result sanity ' "$log" || echo "result sanity 1 0")
  read -r _ _ u_rc u_t < <(grep -m1 '^result unit ' "$log" || echo "result unit 1 0")
  read -r _ _ pyver core < <(grep -m1 '^result python ' "$log" || echo "result python ? ?")
  s_word=PASS; ((s_rc == 0)) || { s_word=FAIL; failed=1; }
  u_word=PASS; ((u_rc == 0)) || { u_word=FAIL; failed=1; }
  overall=PASS; [[ $s_word$u_word == PASSPASS ]] || overall=FAIL
  line=$(printf '%s  ansible-core %-8s Python %-4s %-9s  sanity %s %4d s  unit %s %4d s  total %4d s' \
    "$overall" "$core" "$pyver" "$where" "$s_word" "$s_t" "$u_word" "$u_t" "$total")
  echo "$line" >>"$results"
done
echo "==== core matrix"
cat "$results"
((failed == 0))
