# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""python_env end to end on a temporary directory, with uv, micromamba and the interpreters faked.

The fake tools do what the real ones leave behind that the module relies on (a prefix with
bin/python) and record every command, so the tests see exactly what a run executes: nothing on
a converged run, a new prefix and a swap on a change, and the old environment untouched when a
step fails.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils import basic

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _pyenv as pe
from ansible_collections.llmops.gpu_stack.plugins.modules import python_env

H1 = "1" * 64
H2 = "2" * 64
H3 = "3" * 64


def lock(jinja2="3.1.5", hashes=(H1,)):
    return "jinja2==%s %s\npyyaml==6.0.3 --hash=sha256:%s\n" % (jinja2, " ".join("--hash=sha256:" + h for h in hashes), H3)


class FakeTools(object):
    """Stands in for run_command: the interpreter, uv, micromamba, pip and the verify script."""

    def __init__(self):
        self.calls = []
        self.python_version = "3.11.2"
        self.fail_install = None          # stderr of a failing install step
        self.installed = {}               # name -> version override in the verify report
        self.torch = None                 # torch section of the verify report
        self.seen_files = {}

    def __call__(self, module, argv, environ_update=None, **kwargs):
        argv = list(argv)
        self.calls.append((argv, dict(environ_update or {})))
        tool = os.path.basename(argv[0])
        if tool in ("uv", "micromamba"):
            for arg in argv:
                if os.path.isfile(arg):
                    with open(arg) as handle:
                        self.seen_files[os.path.basename(arg)] = handle.read()
        if argv[1:3] == ["-I", "-c"] and len(argv) == 4:
            return 0, self.python_version + "\n", ""
        if argv[1:3] == ["-I", "-c"] and len(argv) == 5:
            spec = json.loads(argv[4])
            versions = dict((p["name"], self.installed.get(p["name"], p["version"])) for p in spec["pins"])
            report = {"python_version": self.python_version, "versions": versions, "missing": [], "skipped": [],
                      "mismatched": [{"name": n, "pinned": p["version"], "installed": versions[n]}
                                     for p in spec["pins"] for n in [p["name"]] if versions[n] != p["version"]],
                      "import_errors": {}, "torch": self.torch if spec.get("torch_cuda") else None}
            return 0, "noise\n" + json.dumps(report) + "\n", ""
        if tool == "uv" and argv[1] == "venv" or tool == "micromamba":
            prefix = argv[-1] if tool == "uv" else argv[argv.index("--prefix") + 1]
            os.makedirs(os.path.join(prefix, "bin"))
            open(os.path.join(prefix, "bin", "python"), "w").close()
            return 0, "", ""
        if self.fail_install:
            return 1, "", self.fail_install
        return 0, "", ""

    def commands(self):
        return [argv for argv, _env in self.calls if not (argv[1:3] == ["-I", "-c"])]


@pytest.fixture
def tools(monkeypatch):
    fake = FakeTools()

    def run_command(module, argv, **kwargs):
        return fake(module, argv, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return fake


@pytest.fixture
def root(tmp_path):
    (tmp_path / "bin").mkdir()
    for tool in ("uv", "micromamba"):
        path = tmp_path / "bin" / tool
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    (tmp_path / "python3").write_text("")
    (tmp_path / "envs").mkdir()
    return tmp_path


def uv_args(root, **extra):
    args = {"path": str(root / "envs" / "app"), "backend": "uv", "python": str(root / "python3"),
            "python_version": "3.11.2", "uv": str(root / "bin" / "uv"), "cache_dir": str(root / "cache"),
            "requirements": lock(), "imports": ["jinja2", "yaml"]}
    args.update(extra)
    return args


def builds(root, name="app"):
    return sorted(n for n in os.listdir(str(root / "envs")) if n.startswith("." + name + "-"))


def test_build_then_converged_run_executes_nothing(run_module, tools, root):
    outcome, first = run_module(python_env.main, uv_args(root))
    assert outcome == "exit", first
    assert first["changed"] and first["rebuilt"] and not first["reused"]
    link = root / "envs" / "app"
    assert os.readlink(str(link)) == os.path.basename(first["prefix"])
    record = json.loads((link / pe.STAMP_FILE).read_text())
    assert record["stamp"] == first["stamp"] and record["pins"] == ["jinja2==3.1.5", "pyyaml==6.0.3"]
    assert (link / ".gpu_stack" / "requirements.txt").read_text() == lock()
    assert [c[:2] for c in tools.commands()] == [[str(root / "bin" / "uv"), "venv"], [str(root / "bin" / "uv"), "pip"]]
    assert tools.seen_files["requirements.txt"] == lock()
    assert tools.calls[1][1]["UV_CACHE_DIR"] == str(root / "cache")

    tools.calls = []
    outcome, second = run_module(python_env.main, uv_args(root))
    assert outcome == "exit" and second["changed"] is False
    assert tools.commands() == []          # no uv, no solve, no install: only the interpreter's version was read
    assert len(tools.calls) == 1


def test_check_mode_plans_and_changes_nothing(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root), check_mode=True)
    assert outcome == "exit" and result["changed"] and result["rebuilt"]
    assert result["commands"][0][1] == "venv" and "--require-hashes" in result["commands"][1]
    assert os.listdir(str(root / "envs")) == []
    assert tools.commands() == []


def test_one_pin_change_builds_a_new_prefix_and_keeps_the_previous(run_module, tools, root):
    _o, first = run_module(python_env.main, uv_args(root))
    outcome, second = run_module(python_env.main, uv_args(root, requirements=lock("3.1.6", (H2,)), _ansible_diff=True))
    assert outcome == "exit" and second["changed"] and second["rebuilt"]
    assert second["previous_prefix"] == first["prefix"] and second["prefix"] != first["prefix"]
    assert os.readlink(str(root / "envs" / "app")) == os.path.basename(second["prefix"])
    assert len(builds(root)) == 2
    assert second["diff"]["before"] == "jinja2==3.1.5\npyyaml==6.0.3\n"
    assert second["diff"]["after"] == "jinja2==3.1.6\npyyaml==6.0.3\n"


def test_putting_a_pin_back_switches_to_the_kept_build_without_installing(run_module, tools, root):
    _o, first = run_module(python_env.main, uv_args(root))
    run_module(python_env.main, uv_args(root, requirements=lock("3.1.6", (H2,))))
    tools.calls = []
    outcome, back = run_module(python_env.main, uv_args(root))
    assert outcome == "exit" and back["changed"] and back["reused"] and not back["rebuilt"]
    assert back["prefix"] == first["prefix"] and tools.commands() == []
    assert os.readlink(str(root / "envs" / "app")) == os.path.basename(first["prefix"])


def test_keep_zero_removes_the_previous_build(run_module, tools, root):
    run_module(python_env.main, uv_args(root, keep=0))
    _o, second = run_module(python_env.main, uv_args(root, keep=0, requirements=lock("3.1.6", (H2,))))
    assert builds(root) == [os.path.basename(second["prefix"])]
    assert len(second["removed"]) == 1


def test_a_failed_install_leaves_the_environment_and_no_partial_build(run_module, tools, root):
    _o, first = run_module(python_env.main, uv_args(root))
    tools.fail_install = "error: Failed to download `jinja2==3.1.6`\n  cause: Hash mismatch for `jinja2==3.1.6`\n"
    outcome, result = run_module(python_env.main, uv_args(root, requirements=lock("3.1.6", (H2,))))
    assert outcome == "fail"
    assert "environment app: the build failed (uv exited 1)" in result["msg"]
    assert "Hash mismatch for `jinja2==3.1.6`" in result["msg"] and "is unchanged" in result["msg"]
    assert os.readlink(str(root / "envs" / "app")) == os.path.basename(first["prefix"])
    assert builds(root) == [os.path.basename(first["prefix"])]
    assert [n for n in os.listdir(str(root / "envs")) if ".staging-" in n or ".swap-" in n] == []


def test_a_build_that_fails_verification_is_not_swapped_in(run_module, tools, root):
    _o, first = run_module(python_env.main, uv_args(root))
    tools.installed = {"jinja2": "3.1.4"}
    outcome, result = run_module(python_env.main, uv_args(root, requirements=lock("3.1.6", (H2,))))
    assert outcome == "fail" and "jinja2 is 3.1.4, the pin is 3.1.6" in result["msg"]
    assert result["verify"]["mismatched"][0]["name"] == "jinja2"
    assert os.readlink(str(root / "envs" / "app")) == os.path.basename(first["prefix"])
    assert builds(root) == [os.path.basename(first["prefix"])]


def test_wrong_interpreter_version_fails_before_anything(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, python_version="3.10.12"))
    assert outcome == "fail"
    assert "python_version is 3.10.12 but %s is Python 3.11.2" % (root / "python3") in result["msg"]
    assert os.listdir(str(root / "envs")) == [] and tools.commands() == []


def test_unhashed_lock_fails_naming_the_line(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, requirements="jinja2==3.1.5\n"))
    assert outcome == "fail" and "requirements line 1: jinja2==3.1.5 has no --hash" in result["msg"]


def test_a_directory_in_the_way_is_refused(run_module, tools, root):
    (root / "envs" / "app").mkdir()
    outcome, result = run_module(python_env.main, uv_args(root))
    assert outcome == "fail" and "is not an environment this module manages" in result["msg"]


def test_checked_reports_without_changing(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, state="checked"))
    assert outcome == "exit" and result["changed"] is False and result["rebuild_needed"] is True
    assert result["interpreter"] == {"path": str(root / "python3"), "version": "3.11.2"}
    assert os.listdir(str(root / "envs")) == []
    run_module(python_env.main, uv_args(root))
    _o, again = run_module(python_env.main, uv_args(root, state="checked"))
    assert again["rebuild_needed"] is False


def test_absent_removes_link_and_every_build(run_module, tools, root):
    run_module(python_env.main, uv_args(root))
    run_module(python_env.main, uv_args(root, requirements=lock("3.1.6", (H2,))))
    outcome, result = run_module(python_env.main, {"path": str(root / "envs" / "app"), "state": "absent"})
    assert outcome == "exit" and result["changed"] and os.listdir(str(root / "envs")) == []
    _o, again = run_module(python_env.main, {"path": str(root / "envs" / "app"), "state": "absent"})
    assert again["changed"] is False


def test_micromamba_builds_from_channels_and_spec_then_installs_with_pip(run_module, tools, root):
    args = {"path": str(root / "envs" / "serving"), "backend": "micromamba", "python_version": "3.10.12",
            "micromamba": str(root / "bin" / "micromamba"), "cache_dir": str(root / "mamba"),
            "channels": ["https://conda.mirror.example/conda-forge"], "conda_spec": "dependencies: [zlib]\n",
            "requirements": lock(), "index_url": "https://user:pw@pypi.mirror.example/simple"}
    tools.python_version = "3.10.12"
    outcome, result = run_module(python_env.main, args)
    assert outcome == "exit", result
    create, pip = tools.commands()
    assert create[:2] == [str(root / "bin" / "micromamba"), "create"] and create[-2:] == ["python=3.10.12", "pip"]
    assert create[create.index("--channel") + 1] == "https://conda.mirror.example/conda-forge"
    assert tools.seen_files["environment.yml"] == "dependencies: [zlib]\n"
    assert pip[1:5] == ["-I", "-m", "pip", "install"] and "--require-hashes" in pip
    assert "https://user:pw@pypi.mirror.example/simple" in pip          # the real URL is used ...
    assert "https://***@pypi.mirror.example/simple" in result["commands"][1]   # ... and hidden in the result
    assert tools.calls[0][1]["MAMBA_ROOT_PREFIX"] == str(root / "mamba")
    assert (root / "envs" / "serving" / ".gpu_stack" / "environment.yml").is_file()


def test_micromamba_from_an_explicit_lock(run_module, tools, root):
    args = {"path": str(root / "envs" / "serving"), "backend": "micromamba", "python_version": "3.10.12",
            "micromamba": str(root / "bin" / "micromamba"), "conda_lock": "@EXPLICIT\nhttps://x/python.conda\n"}
    tools.python_version = "3.10.12"
    outcome, result = run_module(python_env.main, args)
    assert outcome == "exit", result
    (create,) = tools.commands()
    assert create[-2] == "--file" and create[-1].endswith("explicit.txt") and "--channel" not in create


def test_conda_inputs_with_uv_are_refused(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, conda_spec="dependencies: []\n"))
    assert outcome == "fail" and "conda_spec and conda_lock need backend micromamba" in result["msg"]


def torch_args(root, **extra):
    args = uv_args(root, requirements=None, imports=["torch"], torch_index_url="https://download.pytorch.org/whl/{variant}",
                   requirements_by_variant={"cu118": lock("3.1.5"), "cu121": lock("3.1.6", (H2,))})
    args.pop("requirements")
    args.update(extra)
    return args


def test_torch_variant_from_the_driver_with_its_index_and_cuda_check(run_module, tools, root):
    tools.torch = {"version": "2.1.0+cu121", "cuda": "12.1", "available": True, "device_count": 2}
    outcome, result = run_module(python_env.main, torch_args(root, driver_version="535.261.03", torch_check=True))
    assert outcome == "exit", result
    assert result["torch_variant"] == "cu121" and result["torch"]["available"] is True
    sync = tools.commands()[1]
    assert sync[sync.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cu121"
    assert "--index-strategy" in sync


def test_torch_cuda_check_failure_keeps_nothing(run_module, tools, root):
    tools.torch = {"version": "2.1.0+cu121", "cuda": "12.1", "available": False, "device_count": 0}
    outcome, result = run_module(python_env.main, torch_args(root, driver_version="535.261.03", torch_check=True))
    assert outcome == "fail" and "torch.cuda.is_available() is False" in result["msg"]
    assert os.listdir(str(root / "envs")) == []


def test_requested_variant_the_driver_cannot_run_fails_in_checked_state(run_module, tools, root):
    outcome, result = run_module(python_env.main, torch_args(root, state="checked", torch_variant="cu121",
                                                             driver_version="520.61.05"))
    assert outcome == "fail"
    assert "torch variant cu121 needs CUDA 12.1 but the driver is 520.61.05" in result["msg"]
    assert result["variant"] == "cu121" and result["driver_version"] == "520.61.05"


def test_no_driver_gives_a_warning(run_module, tools, root):
    outcome, result = run_module(python_env.main, torch_args(root, state="checked", torch_variant="cu118"))
    assert outcome == "exit"
    assert any("not checked against a driver" in w for w in result["warnings_shown"])


def test_missing_wheelhouse_is_a_change_in_check_mode_and_an_error_otherwise(run_module, tools, root):
    args = uv_args(root, wheelhouse=str(root / "wheels"))
    outcome, planned = run_module(python_env.main, args, check_mode=True)
    assert outcome == "exit" and planned["changed"]
    assert "--no-index" in planned["commands"][1]
    outcome, result = run_module(python_env.main, args)
    assert outcome == "fail" and "wheelhouse %s does not exist" % (root / "wheels") in result["msg"]


def test_missing_ca_bundle_is_refused(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, ca_bundle=str(root / "ca.pem")))
    assert outcome == "fail" and "the CA bundle %s (ca_bundle) is not a file" % (root / "ca.pem") in result["msg"]
    outcome, result = run_module(python_env.main, uv_args(root, ca_bundle=str(root / "ca.pem"), state="checked"))
    assert outcome == "fail" and "(ca_bundle) is not a file" in result["msg"]


def test_ca_bundle_goes_to_every_tool(run_module, tools, root):
    (root / "ca.pem").write_text("pem")
    outcome, _result = run_module(python_env.main, uv_args(root, ca_bundle=str(root / "ca.pem")))
    assert outcome == "exit"
    assert tools.calls[1][1]["SSL_CERT_FILE"] == str(root / "ca.pem")


def test_negative_keep_is_refused(run_module, tools, root):
    outcome, result = run_module(python_env.main, uv_args(root, keep=-1))
    assert outcome == "fail" and "keep must be 0 or more" in result["msg"]
