"""Shared testinfra set-up for every molecule scenario.

Ansible reaches the stand-in hosts over SSH (molecule/_shared/create.yml). The checks in the
tests only read state, and the stand-ins are local podman containers named after the
inventory hosts: talking to them through `podman exec` checks the same state in milliseconds.
"""
import json
import os

import pytest
import testinfra
import yaml


def connection_vars(name):
    """The Ansible connection variables molecule uses for stand-in `name` (SSH, key, port and
    the run's known_hosts), for a test that runs a playbook with an inventory of its own."""
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        instance = [item for item in yaml.safe_load(handle) or [] if item["instance"] == name]
    assert instance, "no instance %s in %s" % (name, os.environ["MOLECULE_INSTANCE_CONFIG"])
    instance = instance[0]
    known_hosts = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ssh", "known_hosts")
    return {
        "ansible_connection": instance["connection"], "ansible_host": instance["address"],
        "ansible_port": instance["port"], "ansible_user": instance["user"],
        "ansible_private_key_file": instance["identity_file"],
        "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
                                   % known_hosts,
    }


@pytest.fixture(scope="session")
def standin_inventory():
    """standin_inventory(path, name, group='gpu_hosts', **host_vars): writes an inventory of one
    stand-in host (without the scenario's group variables) and returns its path."""

    def write(path, name, group="gpu_hosts", **host_vars):
        host = dict(connection_vars(name), **host_vars)
        with open(str(path), "w", encoding="utf-8") as handle:
            json.dump({group: {"hosts": {name: host}}}, handle)
        return str(path)

    return write


@pytest.fixture(scope="module")
def host(_testinfra_host):
    return testinfra.get_host("podman://" + _testinfra_host.backend.host)


def pytest_runtest_makereport(item, call):
    """On a failed check, print the journal of the units the test names in `units`."""
    if call.when != "call" or call.excinfo is None:
        return
    units = getattr(item.module, "JOURNAL_UNITS", ())
    host = item.funcargs.get("host")
    if not units or host is None:
        return
    for unit in units:
        out = host.run("journalctl --no-pager -n 40 -u %s", unit)
        item.add_report_section("call", "journal " + unit, out.stdout)


@pytest.fixture(scope="module")
def ansible_host(_testinfra_host):
    """The same host through Ansible, for running the collection's modules (host.ansible)."""
    return _testinfra_host


@pytest.fixture(scope="module")
def inventory_name(_testinfra_host):
    return _testinfra_host.backend.host


@pytest.fixture(scope="session")
def run_playbook():
    """Run a playbook of the collection from the control node against the scenario's
    inventory; returns (rc, combined output)."""
    import subprocess

    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]

    def run(playbook, limit, extra_vars=None, check=False):
        cmd = [
            "ansible-playbook", os.path.join(project, playbook),
            "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", limit,
        ]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(project, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(project, "build", "collections"))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              universal_newlines=True, timeout=600, check=False)
        return proc.returncode, proc.stdout

    return run


@pytest.fixture(scope="session")
def check_mounted_by_uuid():
    """A checker for a file system mounted through fstab by UUID with noatime:
    check_mounted_by_uuid(host, mount_point, fstype)."""

    def check(host, mount_point, fstype):
        fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()
                 if line.strip() and not line.startswith("#")]
        entry = [fields for fields in fstab if fields[1] == mount_point]
        assert len(entry) == 1, fstab
        source, fs_in_fstab, options = entry[0][0], entry[0][2], entry[0][3]
        assert source.startswith("UUID=") and fs_in_fstab == fstype
        assert "noatime" in options.split(",")
        mount = host.mount_point(mount_point)
        assert mount.exists and mount.filesystem == fstype
        assert "noatime" in mount.options
        uuid = host.check_output("blkid -p -s UUID -o value %s", mount.device)
        assert source == "UUID=" + uuid

    return check
