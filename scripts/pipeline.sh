#!/usr/bin/env bash
# Runs the pipeline stages (make targets) in order, timing each, and ends with a summary line
# per stage. A failing stage does not hide the others; the pipeline fails if any stage failed.
# The first stage, `setup`, is run before them; without it nothing else can run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
summary=()
failed=0
run_stage() {
  local stage=$1 start=$SECONDS rc
  echo "==== stage ${stage}"
  make --no-print-directory "$stage"
  rc=$?
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    summary+=("$(printf 'PASS  %-14s %5d s' "$stage" "$took")")
  else
    failed=$((failed + 1))
    summary+=("$(printf 'FAIL  %-14s %5d s' "$stage" "$took")")
  fi
  return $rc
}
total_start=$SECONDS
if ! run_stage setup; then
  printf 'pipeline: %s\n' "${summary[@]}"
  echo "pipeline: setup failed; nothing else ran"
  exit 1
fi
for stage in "$@"; do
  run_stage "$stage"
done
echo "==== summary"
printf 'pipeline: %s\n' "${summary[@]}"
passed=$((${#summary[@]} - failed))
total=$((SECONDS - total_start))
echo "pipeline: total ${total} s ($((total / 60)) min)"
# CI allows 90 minutes; make test keeps 30 of them free for the scenarios still to come.
if ((total > ${GPU_STACK_PIPELINE_BUDGET_S:-3600})); then
  echo "pipeline: WARNING: the total ${total} s is over the ${GPU_STACK_PIPELINE_BUDGET_S:-3600} s budget of make test;" \
       "find the slow stage above before adding to it"
fi
echo "pipeline: ${passed} passed, ${failed} failed"
((failed == 0))
