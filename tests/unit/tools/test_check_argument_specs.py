"""The argument-spec check catches every kind of disagreement it claims to."""
import importlib.util
import pathlib

import pytest
import yaml

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "sanity" / "check_argument_specs.py"
spec = importlib.util.spec_from_file_location("check_argument_specs", SCRIPT)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def make_role(tmp_path, defaults, options, name="demo"):
    role = tmp_path / name
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump({"argument_specs": {"main": {"options": options}}})
    )
    return role


def opt(default, type_="str"):
    return {"type": type_, "description": "x", "default": default}


def test_matching_role_passes(tmp_path):
    role = make_role(tmp_path, {"demo_a": 1}, {"demo_a": opt(1, "int")})
    assert check.check_role(role) == []


@pytest.mark.parametrize(
    "defaults,options,expected",
    [
        ({"demo_a": 1, "demo_b": 2}, {"demo_a": opt(1)}, "demo_b is in defaults/main.yml but not in argument_specs"),
        ({"demo_a": 1}, {"demo_a": opt(1), "demo_b": opt(2)}, "demo_b is in argument_specs but not in defaults/main.yml"),
        ({"demo_a": 1}, {"demo_a": opt(2)}, "demo_a default differs"),
        ({"demo_a": 1}, {"demo_a": {"default": 1, "description": "x"}}, "demo_a has no type"),
        ({"demo_a": 1}, {"demo_a": {"default": 1, "type": "int"}}, "demo_a has no description"),
        ({"other_a": 1}, {"other_a": opt(1)}, "does not carry the role prefix"),
    ],
)
def test_disagreements_are_reported(tmp_path, defaults, options, expected):
    problems = check.check_role(make_role(tmp_path, defaults, options))
    assert any(expected in p for p in problems), problems


def test_missing_specs_file_is_reported(tmp_path):
    role = tmp_path / "bare"
    (role / "defaults").mkdir(parents=True)
    assert check.check_role(role) == ["bare: meta/argument_specs.yml is missing"]


def test_required_option_needs_no_default(tmp_path):
    role = make_role(tmp_path, {}, {"demo_a": {"type": "str", "description": "x", "required": True}})
    assert check.check_role(role) == []


def test_shared_plan_variable_is_documented_without_a_role_default(tmp_path):
    role = make_role(tmp_path, {"demo_a": 1}, {"demo_a": opt(1, "int"),
                                               "gpu_stack_models": {"type": "list", "description": "the plan"}})
    assert check.check_role(role) == []
    # A shared variable in a role's defaults would shadow the inventory's plan: still a disagreement
    # when the specs do not declare it, and other prefixes are still refused.
    role = make_role(tmp_path / "b", {"gpu_stack_other": 1}, {})
    assert any("gpu_stack_other is in defaults/main.yml but not in argument_specs" in p for p in check.check_role(role))
