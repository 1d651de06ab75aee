#!/usr/bin/env bash
# Lists the collection tarball (`make build`) and fails on any file outside the allow-list
# below, and on anything a user needs that is missing. Prints a summary per top-level folder.
#   usage: tarball-check.sh [TARBALL]    (default: build/dist/llmops-gpu_stack-<galaxy.yml version>.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version: *//p' galaxy.yml)
tarball=${1:-build/dist/llmops-gpu_stack-$version.tar.gz}
[[ -f $tarball ]] || { echo "tarball-check: no $tarball (make build)" >&2; exit 1; }

# What a user gets: the collection metadata, the licence, README and changelog, the roles,
# plugins and playbooks, the documentation and the example inventory.
allowed='^(MANIFEST\.json|FILES\.json|README\.md|CHANGELOG\.md|COPYING'
allowed+='|changelogs/(changelog|config)\.yaml'
allowed+='|meta/(runtime\.yml|execution-environment\.yml|ee-[a-z]+\.txt)'
allowed+='|docs/[^/]+\.md|docs/reference/[^/]+\.rst'
allowed+='|roles/[a-z_]+/(README\.md|(defaults|handlers|meta|tasks|vars|templates|files)/.+)'
allowed+='|plugins/(modules|module_utils|filter|doc_fragments)/[a-z_0-9]+\.py'
allowed+='|playbooks/[a-z_]+\.yml|playbooks/(templates|files|vars)/.+'
allowed+='|inventories/example/.+)$'
# Never, whatever folder: caches, bytecode, editor and VCS leftovers, secrets by their usual names.
forbidden='(__pycache__|\.pyc$|\.swp$|~$|(^|/)\.git(/|$)|\.orig$|\.rej$|(^|/)id_[a-z0-9]+$|\.pem$|\.key$)'

mapfile -t entries < <(tar -tzf "$tarball")
files=()
declare -A shipped=()
for entry in "${entries[@]}"; do
  [[ $entry == */ ]] && continue
  files+=("${entry#./}")
  shipped[${entry#./}]=1
done

bad=0
for f in "${files[@]}"; do
  if [[ ! $f =~ $allowed ]] || [[ $f =~ $forbidden ]]; then
    echo "tarball-check: not allowed in the tarball: $f"
    bad=$((bad + 1))
  fi
done

# What must be there: metadata, licence, docs entry points, every role and module of the checkout.
required=(MANIFEST.json FILES.json README.md CHANGELOG.md COPYING meta/runtime.yml
  meta/execution-environment.yml changelogs/changelog.yaml inventories/example/hosts.yml)
for role in roles/*/; do
  role=${role%/}
  [[ -f $role/meta/argument_specs.yml ]] && required+=("$role/meta/argument_specs.yml" "$role/tasks/main.yml")
done
for module in plugins/modules/*.py plugins/filter/*.py playbooks/*.yml; do required+=("$module"); done
missing=0
for r in "${required[@]}"; do
  if [[ -z ${shipped[$r]:-} ]]; then
    echo "tarball-check: missing from the tarball: $r"
    missing=$((missing + 1))
  fi
done

echo "tarball-check: $tarball: ${#files[@]} files, $(du -k "$tarball" | cut -f1) KiB"
printf '%s\n' "${files[@]}" | awk -F/ '{ top = (NF > 1 ? $1 "/" : $1); n[top]++ } END { for (t in n) printf "  %-22s %4d\n", t, n[t] }' | sort
if ((bad || missing)); then
  echo "tarball-check: FAIL: $bad file(s) outside the allow-list, $missing required file(s) missing"
  exit 1
fi
echo "tarball-check: PASS: every file is on the allow-list and nothing required is missing"
