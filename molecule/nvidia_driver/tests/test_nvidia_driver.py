"""The nvidia_driver role's real effect on the stand-in host (no GPU, image-build mode).

The last tests run the role again through ansible-playbook: the check-mode plans of the other
install paths, a check-mode run of the NVIDIA-repository path, and finally state=absent, which
removes what the converge installed (the scenario destroys the host afterwards).
"""
import json
import os
import subprocess

import pytest

JOURNAL_UNITS = ("nvidia-persistenced.service",)

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.dirname(os.path.dirname(SCENARIO))

# Pinned versions (roles/nvidia_driver/vars), checked against apt-cache policy on each release.
PINNED = {"bookworm": "535.261.03", "trixie": "550.163.01"}
DRIVER_PACKAGES = ["nvidia-driver", "nvidia-kernel-dkms", "nvidia-smi", "libnvidia-ml1"]


@pytest.fixture(scope="module")
def pinned(host):
    return PINNED[host.system_info.codename]


def _run_playbook(inventory, playbook, *extra):
    """Run a playbook of this scenario against the stand-in host; returns (rc, output)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, "build", "collections"),
               ANSIBLE_INJECT_FACT_VARS="false", ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    # The scenario's group variables (molecule.yml) do not reach this inventory: repeat them.
    cmd = ["ansible-playbook", "-i", inventory, os.path.join(SCENARIO, playbook),
           "-e", "nvidia_driver_install_without_gpu=true", "-e", '{"converge_roles": ["nvidia_driver"]}'] + list(extra)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(name="run_role")
def run_role_fixture(host, standin_inventory, tmp_path):
    inventory = standin_inventory(tmp_path / "inventory.json", host.backend.name)
    return lambda playbook, *extra: _run_playbook(inventory, playbook, *extra)


def test_driver_packages_at_the_pinned_version(host, pinned):
    for name in DRIVER_PACKAGES:
        package = host.package(name)
        assert package.is_installed, name
        assert package.version.startswith(pinned + "-"), (name, package.version)
    # Dependencies from the same source follow the pin too.
    assert host.package("nvidia-driver-bin").version.startswith(pinned + "-")
    assert host.package("nvidia-persistenced").is_installed
    assert host.package("initramfs-tools").is_installed


def test_pin_makes_the_pinned_version_the_candidate(host, pinned):
    pref = host.file("/etc/apt/preferences.d/gpu-stack-nvidia-driver.pref")
    assert (pref.user, pref.group, pref.mode) == ("root", "root", 0o644)
    assert pref.contains("^Package: src:nvidia-graphics-drivers")
    assert pref.contains("^Pin: version %s-\\*$" % pinned.replace(".", "\\."))
    policy = host.check_output("apt-cache policy nvidia-driver libcuda1")
    assert policy.count("Candidate: %s-" % pinned) == 2
    assert " %s-" % pinned in policy and "1001" in policy


def test_packages_are_held(host):
    held = host.check_output("apt-mark showhold").split()
    for name in DRIVER_PACKAGES + ["nvidia-persistenced"]:
        assert name in held
    # An upgrade leaves them alone.
    simulated = host.check_output("apt-get -s -o Debug::NoLocking=1 upgrade")
    assert "Inst nvidia" not in simulated and "Inst libnvidia" not in simulated


def test_components_added_on_the_hosts_own_mirror(host):
    sources = host.file("/etc/apt/sources.list.d/gpu-stack-distribution-components.sources")
    assert (sources.user, sources.group, sources.mode) == ("root", "root", 0o644)
    codename = host.system_info.codename
    mirror = host.check_output("awk '/^deb /{print $2; exit}' /etc/apt/sources.list")
    assert sources.contains("^URIs: %s" % mirror.rstrip("/"))
    assert sources.contains("^Suites: %s$" % codename)
    assert sources.contains("^Components: contrib non-free non-free-firmware$")
    assert "non-free/binary" in host.check_output("apt-get indextargets --format '$(METAKEY)'")


def test_nouveau_blacklisted_for_modprobe_and_initramfs(host):
    conf = host.file("/etc/modprobe.d/gpu-stack-blacklist-nouveau.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o644)
    assert conf.contains("^blacklist nouveau$") and conf.contains("^options nouveau modeset=0$")
    # modprobe (and the initramfs hook, which copies /etc/modprobe.d) sees the blacklist.
    config = host.check_output("modprobe --showconfig")
    assert "blacklist nouveau" in config
    assert host.file("/usr/share/initramfs-tools/hooks").is_directory


def test_dkms_registered_without_a_build_in_image_mode(host, pinned):
    status = host.check_output("dkms status")
    assert "nvidia-current/%s" % pinned in status
    assert "installed" not in status  # no headers for the running kernel: nothing built


def test_persistence_daemon_enabled(host):
    assert host.service("nvidia-persistenced").is_enabled


def test_no_fabric_manager_without_nvswitch(host):
    assert "fabricmanager" not in host.check_output("dpkg-query -W -f '${Package}\\n'")


def test_reboot_required_reported_and_no_reboot_attempted(host, pinned):
    fact = json.loads(host.file("/etc/ansible/facts.d/nvidia_driver.fact").content_string)
    assert fact["version"] == pinned and fact["kernel_modules"] == "proprietary"
    assert fact["reboot_required"] is True and fact["rebooted"] is False
    assert any("not loaded" in reason for reason in fact["reboot_reasons"])
    assert any("container" in blocker for blocker in fact["reboot_blockers"])
    assert any("no NVIDIA GPU" in blocker for blocker in fact["reboot_blockers"])
    assert fact["verified"] is False and fact["loaded_version"] is None
    # /run is emptied by a reboot: the marker from the prepare step is still there.
    assert host.file("/run/gpu-stack-no-reboot-marker").exists


def test_other_install_paths_plan_in_check_mode(host, run_role):
    rc, out = run_role("paths.yml")
    assert rc == 0, out[-3000:]
    assert out.count("PATH OK") == 5 and out.count("PATH REFUSED") == 5, out[-3000:]
    assert "changed=0" in out


def test_nvidia_repository_path_in_check_mode_changes_nothing(host, pinned, run_role):
    before = host.file("/etc/apt/preferences.d/gpu-stack-nvidia-driver.pref").content_string
    rc, out = run_role("../_shared/converge.yml", "--check", "-e", "nvidia_driver_source=nvidia")
    assert rc == 0, out[-3000:]
    assert "nvidia-open=580.65.06-*" in out  # branch 580 without GPUs: open modules
    assert "/%s/x86_64/" % {"bookworm": "debian12", "trixie": "debian13"}[host.system_info.codename] in out
    assert "check mode does not add package sources" in out
    assert host.file("/etc/apt/preferences.d/gpu-stack-nvidia-driver.pref").content_string == before
    assert not host.package("cuda-keyring").is_installed


def test_zz_state_absent_removes_driver_pins_holds_and_blacklist(host, run_role):
    rc, out = run_role("../_shared/converge.yml", "-e", "nvidia_driver_state=absent")
    assert rc == 0, out[-3000:]
    for name in DRIVER_PACKAGES + ["nvidia-persistenced", "nvidia-driver-bin"]:
        assert not host.package(name).is_installed, name
    assert "nvidia" not in host.check_output("apt-mark showhold")
    for path in ("/etc/apt/preferences.d/gpu-stack-nvidia-driver.pref",
                 "/etc/modprobe.d/gpu-stack-blacklist-nouveau.conf",
                 "/etc/ansible/facts.d/nvidia_driver.fact"):
        assert not host.file(path).exists, path
    rc, out = run_role("../_shared/converge.yml", "-e", "nvidia_driver_state=absent")
    assert rc == 0 and "changed=0" in out, out[-3000:]
