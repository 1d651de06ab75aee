#!/usr/bin/env bash
# Runs molecule scenarios one after another and prints one line per scenario.
#   usage: molecule.sh PLATFORM|all SCENARIO...
# PLATFORM is debian12 or debian13 (one stand-in) or all (both, side by side). A scenario whose
# point lies in the difference between the distributions names its platform in a PLATFORMS file
# (e.g. `all`), which then replaces a single-platform request.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
platform=$1; shift
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" MOLECULE_NO_LOG=false PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
results=()
failed=0
mkdir -p build/logs
for scenario in "$@"; do
  on=$platform
  [[ $on != all && -f molecule/$scenario/PLATFORMS ]] && on=$(<"molecule/$scenario/PLATFORMS")
  args=(test -s "$scenario")
  [[ $on == all ]] || args+=(--platform-name "${scenario}-${on}")
  log="build/logs/molecule-${scenario}-${on}.log"
  start=$SECONDS
  echo "molecule: ${scenario} on ${on} (log: ${log})"
  if .venv/bin/molecule "${args[@]}" >"$log" 2>&1; then
    results+=("PASS  ${scenario} (${on}) $((SECONDS - start)) s")
  else
    failed=1
    results+=("FAIL  ${scenario} (${on}) $((SECONDS - start)) s  see ${log}")
    echo "---- last 60 lines of ${log}"; tail -n 60 "$log"; echo "----"
  fi
done
printf 'molecule: %s\n' "${results[@]}"
exit $failed
