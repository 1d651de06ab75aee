#!/usr/bin/env bash
# Runs `ansible-test sanity` offline on a copy of the collection's files (ansible-test needs
# the tree at .../ansible_collections/llmops/gpu_stack). ansible-test fetches a get-pip
# script from the internet to bootstrap its venvs; a small local stand-in that runs
# ensurepip and then pip with the same arguments is written to its cache instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv_python="$root/.venv/bin/python"

pip_version=$("$venv_python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements as pr
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(pr.get_venv_packages)).group(1))
PY
)
bootstrap="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [[ ! -f $bootstrap ]]; then
  mkdir -p "$(dirname "$bootstrap")"
  cat >"$bootstrap" <<'PY'
"""Offline stand-in for get-pip.py: ensurepip, then `pip install` with the arguments given."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
PY
  echo "sanity: wrote the offline pip bootstrap $bootstrap"
fi

dest="$root/build/sanity/ansible_collections/llmops/gpu_stack"
rm -rf "$dest"
mkdir -p "$dest"
# Exactly the files git would ship: tracked plus untracked-but-not-ignored.
git ls-files -z --cached --others --exclude-standard | grep -zv '^build/' \
  | (cd "$root" && tar --null -T - -cf -) | tar -C "$dest" -xf -
cd "$dest"
# ansible-test refuses to run outside a git work tree it cannot read; a throwaway repo of the
# copy keeps it on exactly these files.
git init -q . && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
"$root/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
