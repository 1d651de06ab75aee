"""Every role's meta/argument_specs.yml and defaults/main.yml must agree.

For each role under roles/ (internal roles, whose names start with '_', included): the
entry point `main` declares exactly the variables defaults/main.yml sets, with the same
default values, and every option has a type and a description. Exits non-zero with one
line per disagreement.
"""
from __future__ import annotations

import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_PREFIX = "gpu_stack_"


def check_role(role: pathlib.Path) -> list[str]:
    problems = []
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    if not specs_file.is_file():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.is_file() else {}
    specs = yaml.safe_load(specs_file.read_text()) or {}
    options = (specs.get("argument_specs", {}).get("main", {}) or {}).get("options", {}) or {}

    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: {name} is in defaults/main.yml but not in argument_specs")
    for name in sorted(set(options) - set(defaults)):
        # gpu_stack_* are the collection's shared variables (the plan): documented in the specs of
        # every role that reads them, set in the inventory, never a role default.
        if not options[name].get("required", False) and not name.startswith(SHARED_PREFIX):
            problems.append(f"{role.name}: {name} is in argument_specs but not in defaults/main.yml")
    for name in sorted(set(options) & set(defaults)):
        spec = options[name]
        if spec.get("default") != defaults[name]:
            problems.append(
                f"{role.name}: {name} default differs: defaults/main.yml has {defaults[name]!r}, "
                f"argument_specs has {spec.get('default')!r}"
            )
    for name, spec in sorted(options.items()):
        for key in ("type", "description"):
            if key not in spec:
                problems.append(f"{role.name}: {name} has no {key} in argument_specs")
        if not name.startswith((role.name.lstrip("_") + "_", SHARED_PREFIX)):
            problems.append(f"{role.name}: {name} does not carry the role prefix '{role.name.lstrip('_')}_'")
    return problems


def main() -> int:
    roles = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
    problems = [problem for role in roles for problem in check_role(role)]
    for problem in problems:
        print(problem)
    print(f"argument specs: {len(roles)} roles checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
