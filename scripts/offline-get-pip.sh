#!/usr/bin/env bash
# ansible-test downloads get-pip.py to bootstrap its virtual environments; offline, a stand-in
# (ensurepip, then `pip install` with the same arguments) is written to its cache under the name
# the given Python's ansible-test looks for. Used by scripts/sanity.sh and scripts/core-matrix.sh.
#   usage: offline-get-pip.sh PYTHON     (a Python with ansible-core installed)
set -euo pipefail
python=$1
pip_version=$("$python" - <<'PY'
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
  echo "offline-get-pip: wrote the offline pip bootstrap $bootstrap"
fi
