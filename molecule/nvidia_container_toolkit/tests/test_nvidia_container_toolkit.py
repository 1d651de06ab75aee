"""The nvidia_container_toolkit role on a stand-in host without GPU, against the local signed
test repository and the stand-in docker.service that prepare.yml set up."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

JOURNAL_UNITS = ("docker.service",)
ROOT = pathlib.Path(__file__).resolve().parents[3]
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
PIN = "/etc/apt/preferences.d/nvidia-container-toolkit.pref"
DAEMON_JSON = "/etc/docker/daemon.json"
TEST_REPO = "/srv/nvidia-ctk-test-repo"
OPERATOR = {
    "log-driver": "journald",
    "data-root": "/srv/docker",
    "registry-mirrors": ["https://mirror.example.internal"],
    "runtimes": {"crun": {"path": "/usr/bin/crun"}},
    "features": {"containerd-snapshotter": True},
}
# apt-get reading only the toolkit's source: fast, and no other repository is involved.
APT_UPDATE = ("apt-get update -o Dir::Etc::sourcelist=%s -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
              % SOURCES)


def file_checks(host, path, mode=0o644):
    f = host.file(path)
    assert f.is_file and (f.user, f.group, f.mode) == ("root", "root", mode)
    return f


def test_checked_key_is_trusted(host):
    key = file_checks(host, KEYRING)
    assert key.content_string == host.file(TEST_REPO + "/gpgkey").content_string
    assert not host.file(KEYRING + ".download").exists


def test_source_names_the_key_and_the_repository(host):
    lines = [line for line in file_checks(host, SOURCES).content_string.splitlines() if not line.startswith("#")]
    assert lines == ["deb [signed-by=%s] file://%s/$(ARCH) /" % (KEYRING, TEST_REPO)]


def test_pin_holds_all_four_packages_at_the_version(host):
    lines = [line for line in file_checks(host, PIN).content_string.splitlines() if not line.startswith("#")]
    assert lines == [
        "Package: nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1",
        "Pin: version 1.20.1-1",
        "Pin-Priority: 1000",
    ]
    policy = host.run("apt-cache policy")   # apt parses the preference file, or says E: / W:
    assert policy.rc == 0 and "E:" not in policy.stderr and "W:" not in policy.stderr, policy.stderr


def test_apt_checks_the_signature_with_that_key(host):
    update = host.run(APT_UPDATE)
    assert update.rc == 0 and "InRelease" in update.stdout and "W:" not in update.stderr, update.stderr
    # Another valid key in its place: apt (gpgv on Debian 12, sqv on Debian 13) must refuse the repository.
    host.run("cp -p %s %s.kept && cp %s/other-key %s", KEYRING, KEYRING, TEST_REPO, KEYRING)
    try:
        refused = host.run(APT_UPDATE)
    finally:
        host.run("mv %s.kept %s", KEYRING, KEYRING)
    assert "Err:1 file:%s" % TEST_REPO in refused.stdout, refused.stdout
    assert "signature" in refused.stderr and "W:" in refused.stderr, refused.stderr
    assert host.run(APT_UPDATE).rc == 0


def test_daemon_json_keeps_the_operators_settings(host):
    config = json.loads(file_checks(host, DAEMON_JSON).content_string)
    expected = json.loads(json.dumps(OPERATOR))
    expected["runtimes"]["nvidia"] = {"path": "nvidia-container-runtime"}
    expected["features"]["cdi"] = True
    assert config == expected
    backups = host.run("ls %s.*~", DAEMON_JSON).stdout.split()
    assert len(backups) == 1 and json.loads(host.file(backups[0]).content_string) == OPERATOR


def test_docker_restarted_once_for_the_one_change(host):
    # One start from prepare, one restart after converge; the idempotence run changed nothing.
    starts = host.file("/var/lib/docker-standin/starts").content_string.split()
    assert len(starts) == 2


def test_no_cdi_specification_without_a_driver(host):
    assert not host.file("/var/run/cdi/nvidia.yaml").exists


def ansible_playbook(inventory, playbook, *extra):
    """Run a playbook of this scenario with `inventory` (the host alone, in its gpu_hosts group)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", inventory,
         str(SCENARIO / playbook)] + list(extra),
        env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(name="host_inventory")
def host_inventory_fixture(host, tmp_path, standin_inventory):
    return standin_inventory(tmp_path / "inventory.json", host.backend.name, converge_roles=["nvidia_container_toolkit"])


def test_a_key_with_another_fingerprint_is_refused(host, tmp_path, host_inventory):
    inventory = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]
    variables = dict(inventory["group_vars"]["gpu_hosts"])
    variables["nvidia_container_toolkit_gpg_key_fingerprint"] = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    before = (host.file(KEYRING).sha256sum, host.file(SOURCES).sha256sum)
    host.run("mv %s %s.kept", KEYRING, KEYRING)   # as on a first run: no key in place yet
    try:
        run = ansible_playbook(host_inventory, "../_shared/converge.yml", "-e", "@" + str(extra), "--tags", "preflight,facts,repository")
        assert run.returncode != 0
        assert "not nvidia_container_toolkit_gpg_key_fingerprint=C95B321B61E88C1809C4F759DDCAE044F796ECB0" in run.stdout
        assert host.file(TEST_REPO + "/gpgkey").exists
        assert not host.file(KEYRING).exists and not host.file(KEYRING + ".download").exists
        assert host.file(SOURCES).sha256sum == before[1]
    finally:
        host.run("mv %s.kept %s", KEYRING, KEYRING)
    assert host.file(KEYRING).sha256sum == before[0]


def test_role_defaults_skip_a_host_without_gpu(host, host_inventory):
    before = (host.file(DAEMON_JSON).sha256sum, host.file("/var/lib/docker-standin/starts").sha256sum)
    run = ansible_playbook(host_inventory, "defaults.yml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "nvidia_container_toolkit: no NVIDIA GPU on this host" in run.stdout
    assert "nothing installed or changed" in run.stdout
    assert "changed=0" in run.stdout and "failed=0" in run.stdout
    assert (host.file(DAEMON_JSON).sha256sum, host.file("/var/lib/docker-standin/starts").sha256sum) == before
