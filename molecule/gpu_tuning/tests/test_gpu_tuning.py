"""The gpu_tuning role on a stand-in host without GPU: the boot unit, its settings, and the
boot script run against the fake NVML of the unit tests."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

UNIT = "gpu-stack-tuning.service"
JOURNAL_UNITS = (UNIT,)
ROOT = pathlib.Path(__file__).resolve().parents[3]
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = "/etc/gpu_stack/gpu_tuning.json"
LIBRARY = "/opt/gpu_stack/lib/module_utils"
SCRIPT_DIR = "/opt/gpu_stack/lib/gpu_tuning"
SCRIPT = SCRIPT_DIR + "/gpu_tuning_apply.py"


def scenario_vars(host):
    """The variables molecule.yml gives this host (group_vars, then its host_vars)."""
    inventory = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]
    result = dict(inventory["group_vars"]["gpu_hosts"])
    result.update(inventory.get("host_vars", {}).get(host.backend.name, {}))
    return result


def persistence(host):
    # Debian 12 leaves 'auto', which resolves to legacy mode without nvidia-persistenced.
    return scenario_vars(host).get("gpu_tuning_persistence", "auto").replace("auto", "legacy")


def test_boot_unit_installed_and_enabled(host):
    unit = host.file("/etc/systemd/system/" + UNIT)
    assert (unit.user, unit.group, unit.mode) == ("root", "root", 0o644)
    assert host.run("systemctl is-enabled %s", UNIT).stdout.strip() == "enabled"
    verify = host.run("systemd-analyze verify /etc/systemd/system/%s", UNIT)
    assert verify.rc == 0, verify.stderr


def test_boot_unit_order_and_command(host):
    show = host.run("systemctl show -p After -p Wants -p ExecStart -p Type -p RemainAfterExit %s", UNIT).stdout
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    after = props["After"].split()
    assert "nvidia-persistenced.service" in after and "systemd-modules-load.service" in after
    assert props["Type"] == "oneshot" and props["RemainAfterExit"] == "yes"
    assert "argv[]=/usr/bin/python3 -I %s --config %s ;" % (SCRIPT, SETTINGS) in props["ExecStart"]
    wants = props.get("Wants", "").split()
    assert ("nvidia-persistenced.service" in wants) == (persistence(host) == "daemon")


def test_settings_file_is_rendered_from_the_variables(host):
    settings = host.file(SETTINGS)
    assert (settings.user, settings.group, settings.mode) == ("root", "root", 0o644)
    config = json.loads(settings.content_string)
    wanted = scenario_vars(host)
    mode = persistence(host)
    assert config["format"] == 1 and config["persistence"] == mode
    assert config["defaults"] == {
        "persistence_mode": True if mode == "legacy" else None,
        "power_limit": wanted["gpu_tuning_power_limit"],
        "application_clocks": wanted["gpu_tuning_application_clocks"],
        "locked_clocks": None,
        "compute_mode": wanted["gpu_tuning_compute_mode"],
        "reset_application_clocks": False,
        "reset_locked_clocks": False,
    }
    assert config["models"] == wanted["gpu_tuning_by_model"]
    assert config["best_effort"] is False and config["wait_seconds"] == 120
    assert config["state_dir"] == "/run/gpu_stack" and config["bindings_path"] == "/opt/gpu_stack/python"


@pytest.mark.parametrize("name", ["_gpu_settings.py", "_nvml.py", "_gpu_tables.py", "_fsutil.py", "_standalone.py"])
def test_boot_script_runs_the_modules_own_code(host, name):
    installed = host.file(LIBRARY + "/" + name)
    assert (installed.user, installed.mode) == ("root", 0o644)
    local = hashlib.sha256((ROOT / "plugins" / "module_utils" / name).read_bytes()).hexdigest()
    assert installed.sha256sum == local
    script = host.file(SCRIPT)
    assert (script.user, script.group, script.mode) == ("root", "root", 0o644)   # run as python3 -I <script>


def test_boot_unit_on_a_host_without_gpu_does_nothing_and_says_so(host):
    start = host.run("systemctl start %s", UNIT)
    assert start.rc == 0, start.stderr
    assert host.run("systemctl is-active %s", UNIT).stdout.strip() == "active"
    journal = host.run("journalctl --no-pager -u %s", UNIT).stdout
    assert "gpu-tuning: no NVIDIA GPU on the PCI bus; nothing to apply" in journal


@pytest.fixture(scope="module")
def fake_gpu_host(host):
    """The unit tests' fake NVML as the host's pynvml (in a scratch directory), with a matching
    fake /sys listing three NVIDIA GPUs: the mixed H100 PCIe + L40S + T4 host."""
    scratch = "/var/tmp/gpu-tuning-fake"
    host.run("rm -rf %s && mkdir -p %s/bindings", scratch, scratch)
    subprocess.run(["podman", "cp", str(ROOT / "tests" / "unit" / "fake_pynvml.py"),
                    "%s:%s/bindings/fake_pynvml.py" % (host.backend.name, scratch)], check=True)
    shim = ("import fake_pynvml as _fake\\n_nvml = _fake.mixed()\\nNVMLError = _fake.NVMLError\\n\\n\\n"
            "def __getattr__(name):\\n    return getattr(_nvml, name)\\n")
    host.run("printf '%s' > %s/bindings/pynvml.py" % (shim, scratch))
    sysfs = host.run(
        "python3 -c 'import sys; sys.path.insert(0, \"%s/bindings\"); import fake_pynvml as f; "
        "print(f.write_sysfs(\"%s/root\", [(\"0000:17:00.0\", \"0x10de\", \"0x2331\", \"0x030200\", \"nvidia\"), "
        "(\"0000:32:00.0\", \"0x10de\", \"0x26b9\", \"0x030200\", \"nvidia\"), "
        "(\"0000:3d:00.0\", \"0x10de\", \"0x1eb8\", \"0x030200\", \"nvidia\")]))'" % (scratch, scratch))
    assert sysfs.rc == 0, sysfs.stderr
    yield scratch, sysfs.stdout.strip()
    host.run("rm -rf %s", scratch)


def run_script(host, fake_gpu_host, *extra):
    scratch, sysfs = fake_gpu_host
    command = "python3 -I %s --config %s --bindings-path %s/bindings --sysfs-root %s --state-dir %s/state --json"
    return host.run(command + " %s" * len(extra), SCRIPT, SETTINGS, scratch, sysfs, scratch, *extra)


def test_boot_script_applies_each_models_settings(host, fake_gpu_host):
    run = run_script(host, fake_gpu_host)
    assert run.rc == 0, run.stderr
    result = json.loads(run.stdout)
    changes = dict((gpu["name"], gpu["changes"]) for group in result["groups"] for gpu in group["gpus"])
    assert changes == {
        "NVIDIA H100 PCIe": {
            "power_limit": {"before": 350, "after": 300},
            "compute_mode": {"before": "default", "after": "exclusive_process"},
            "application_clocks": {"before": {"memory": 1593, "graphics": 1755}, "after": {"memory": 1593, "graphics": 1410}},
        },
        "NVIDIA L40S": {
            "power_limit": {"before": 350, "after": 250},
            "compute_mode": {"before": "default", "after": "exclusive_process"},
        },
        "Tesla T4": {
            "compute_mode": {"before": "default", "after": "exclusive_process"},
            "locked_clocks": {"before": None, "after": {"min": 585, "max": 1590}},
        },
    }
    assert [group["label"] for group in result["groups"]] == ["NVIDIA L40S", "Tesla T4", "GPUs of no listed model"]
    assert "gpu-tuning: GPU 2 (Tesla T4): locked_clocks changed None -> max=1590/min=585" in run.stderr
    record = json.loads(host.file(fake_gpu_host[0] + "/state/locked_clocks.json").content_string)
    assert list(record["gpus"].values()) == [{"min": 585, "max": 1590}]


def test_boot_script_check_mode_changes_nothing(host, fake_gpu_host):
    host.run("rm -rf %s/state", fake_gpu_host[0])
    run = run_script(host, fake_gpu_host, "--check")
    assert run.rc == 0, run.stderr
    assert json.loads(run.stdout)["check_mode"] is True and "7 setting(s) would change" in run.stderr
    assert not host.file(fake_gpu_host[0] + "/state").exists


def test_role_defaults_change_nothing_on_a_host_without_gpu(host, tmp_path, standin_inventory):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    before = host.file(SETTINGS).sha256sum
    run = subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
         "-i", standin_inventory(tmp_path / "inventory.json", host.backend.name), str(SCENARIO / "defaults.yml")],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "gpu_tuning: no NVIDIA GPU on this host" in run.stdout
    assert "The boot unit is not rendered" in run.stdout
    assert "changed=0" in run.stdout and "failed=0" in run.stdout
    assert host.file(SETTINGS).sha256sum == before
