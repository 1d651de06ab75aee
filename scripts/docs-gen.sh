#!/usr/bin/env bash
# Reference documentation generated from the roles' argument specs and the plugins' own
# documentation with antsibull-docs (requirements/docs.txt, its own cached environment).
#   docs-gen.sh write   regenerate docs/reference/ (make docs)
#   docs-gen.sh check   regenerate into a temporary folder and fail if docs/reference/ differs
#                       (make docs-check)
#   docs-gen.sh lint    antsibull-docs lint-collection-docs with the plugin docs, failing on
#                       any message (make docs-lint)
# antsibull-docs finds the collection through the checkout's link in build/collections
# (scripts/venv.sh makes it); no ansible.cfg is read.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:?usage: docs-gen.sh write|check|lint}

venv=$(scripts/tool-venv.sh docs)
link="$root/build/collections/ansible_collections/llmops/gpu_stack"
[[ -e $link ]] || { echo "docs-gen: $link is missing (make venv)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[defaults]\n' >"$tmp/ansible.cfg"
export PATH="$venv/bin:$PATH" ANSIBLE_CONFIG="$tmp/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$root/build/collections"
unset ANSIBLE_COLLECTIONS_PATHS

generate() {
  # $1: destination folder, then extra options. No version stamp, so an unchanged source gives
  # the same files.
  local dest=$1
  shift
  mkdir -p "$dest"
  antsibull-docs collection --use-current --squash-hierarchy --output-format simplified-rst \
    --no-add-antsibull-docs-version --no-breadcrumbs --cleanup everything "$@" \
    --dest-dir "$dest" llmops.gpu_stack
}

case $mode in
  write)
    # A plugin or role whose documentation does not parse gets an error page here (and the
    # error is printed); the check below refuses it.
    generate docs/reference
    echo "docs-gen: wrote docs/reference/ ($(find docs/reference -type f | wc -l) files)"
    ;;
  check)
    # Errors in any plugin's or role's documentation fail the check instead of becoming pages.
    generate "$tmp/reference" --fail-on-error >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    if ! diff -ru docs/reference "$tmp/reference"; then
      echo "docs-check: docs/reference/ is not what the argument specs and plugin docs generate: run make docs" >&2
      exit 1
    fi
    echo "docs-check: docs/reference/ matches the sources ($(find docs/reference -type f | wc -l) files)"
    ;;
  lint)
    rc=0
    antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs all \
      --disallow-unknown-collection-refs "$link" >"$tmp/lint" 2>&1 || rc=$?
    cat "$tmp/lint"
    if ((rc != 0)) || [[ -s $tmp/lint ]]; then
      echo "docs-lint: FAIL (exit $rc, $(grep -cE ':[0-9]+:[0-9]+: ' "$tmp/lint") message(s))" >&2
      exit 1
    fi
    echo "docs-lint: no message"
    ;;
  *)
    echo "usage: docs-gen.sh write|check|lint" >&2
    exit 2
    ;;
esac
