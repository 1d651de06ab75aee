"""Run one of the collection's modules on this host without a control node.

    run_module.py MODULE '{"option": "value"}' [--check]

Prints the module's JSON result. The collection must be importable as
ansible_collections.llmops.gpu_stack (PYTHONPATH) and ansible-core's module_utils too.
"""
import json
import os
import subprocess
import sys


def run(module, args, check=False):
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "plugins", "modules", module + ".py")
    payload = dict(args)
    payload["_ansible_check_mode"] = bool(check)
    proc = subprocess.run([sys.executable, path], input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}),
                          capture_output=True, text=True, check=False)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return {"failed": True, "msg": "module output is not JSON", "stdout": proc.stdout, "stderr": proc.stderr,
                "rc": proc.returncode}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]), "--check" in sys.argv[3:]), indent=2))
