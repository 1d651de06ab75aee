#!/usr/bin/env bash
# Lists the molecule scenarios. `quick`: those `make test` runs (a scenario opts out with a
# file named FULL_ONLY that says why); `all`: every scenario. `site` runs last.
set -euo pipefail
cd "$(dirname "$0")/../molecule"
mode=${1:-all}
names=()
for d in */; do
  d=${d%/}
  [[ -f $d/molecule.yml && $d != site ]] || continue
  [[ $mode == quick && -f $d/FULL_ONLY ]] && continue
  names+=("$d")
done
[[ -f site/molecule.yml ]] && names+=(site)
echo "${names[@]}"
