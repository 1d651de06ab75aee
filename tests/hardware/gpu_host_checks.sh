#!/usr/bin/env bash
# Read-only checks of the collection against a real NVIDIA GPU host (see README.md in this
# directory). Changes no setting of any GPU: gpu_settings runs in check mode only.
#   tests/hardware/gpu_host_checks.sh OUTDIR
# Needs: nvidia-smi, a Python 3 with pynvml (nvidia-ml-py) and ansible-core importable
# (ANSIBLE_CORE_PATH may name a directory holding the `ansible` package); for the estimator
# check PyTorch and transformers; for the probe nvcc.
set -uo pipefail
out=${1:?usage: gpu_host_checks.sh OUTDIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
col=$(mktemp -d)
mkdir -p "$col/ansible_collections/llmops"
ln -s "$repo" "$col/ansible_collections/llmops/gpu_stack"
export PYTHONPATH="$col${ANSIBLE_CORE_PATH:+:$ANSIBLE_CORE_PATH}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $1"; shift; "$@" || { echo "== FAILED: $*"; status=1; }; }

nvidia-smi -q -x >"$out/nvidia-smi.xml"
step "gpu_facts against nvidia-smi; gpu_settings (check mode) and deploy_preflight" \
  python3 "$repo/tests/hardware/compare_gpu_facts.py" "$out"
step "cost of gpu_facts against nvidia-smi -q -x" \
  python3 "$repo/benchmarks/gpu_facts_cost.py" --repeat 20 --output "$out/gpu_facts_cost.json"
before=$(nvidia-smi --query-gpu=persistence_mode,power.limit,clocks.applications.graphics,compute_mode --format=csv,noheader)
# The boot unit's script (what gpu-stack-tuning.service runs) in its check mode, with a
# settings file as the role renders it: the per-model override for an H200 wins.
step "gpu_tuning boot script, check mode" \
  python3 "$repo/roles/gpu_tuning/files/gpu_tuning_apply.py" --check --json --library "$repo/plugins/module_utils" \
  --config "$repo/tests/hardware/gpu_tuning_check.json" --state-dir "$col/state"
after=$(nvidia-smi --query-gpu=persistence_mode,power.limit,clocks.applications.graphics,compute_mode --format=csv,noheader)
step "the card's settings are unchanged after the check-mode run ($before)" test "$before" = "$after"
if [[ -f $repo/roles/observability/files/gpu_stack_nvml_textfile.py ]]; then
  step "observability's NVML textfile collector" bash -c "
    start=\$(date +%s%N)
    python3 '$repo/roles/observability/files/gpu_stack_nvml_textfile.py' --library '$repo/plugins/module_utils' \
      --output '$out/gpu_stack_gpu.prom' --tuning-config '$repo/tests/hardware/gpu_tuning_check.json' &&
    echo \"collector run: \$(( (\$(date +%s%N) - start) / 1000000 )) ms\" &&
    grep -c '^gpu_stack' '$out/gpu_stack_gpu.prom' && grep -q '^gpu_stack_gpu_collector_up 1' '$out/gpu_stack_gpu.prom'"
fi
if command -v nvcc >/dev/null; then
  step "cuda role's probe kernel: compile and run" \
    bash -c "nvcc -o '$col/cuda_probe' '$repo/roles/cuda/files/cuda_probe.cu' && '$col/cuda_probe' | tee '$out/cuda_probe.txt'"
fi
if python3 -c 'import torch, transformers' 2>/dev/null; then
  step "VRAM estimator against PyTorch allocations" \
    python3 "$repo/tests/hardware/estimator_vs_torch.py" "$out" --tokens 8192
fi
echo "== overall: $([[ $status == 0 ]] && echo passed || echo FAILED)"
exit $status
