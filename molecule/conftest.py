"""Shared testinfra set-up for every molecule scenario.

Molecule hands testinfra its Ansible inventory, whose podman connection testinfra does not
handle natively, so every check would run as an Ansible module (seconds each). The stand-in
hosts are local podman containers named after the inventory hosts: talking to them through
`podman exec` checks the same state in milliseconds.
"""
import pytest
import testinfra


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
