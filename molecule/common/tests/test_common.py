"""The common role's real effect on the stand-in host."""
import pytest

SERVICE = "llmserve"


@pytest.mark.parametrize("pkg", ["acl", "ca-certificates", "curl", "gnupg", "kmod", "pciutils", "jq"])
def test_packages_installed(host, pkg):
    assert host.package(pkg).is_installed


def test_service_account_is_locked_system_account(host):
    user = host.user(SERVICE)
    assert user.exists
    assert user.uid == 2300
    assert user.group == SERVICE
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/gpu_stack"
    assert user.password in ("!", "!!", "*", "!*") or user.password.startswith("!")


@pytest.mark.parametrize(
    "path,owner,group,mode",
    [
        ("/opt/gpu_stack", "root", "root", 0o755),
        ("/etc/gpu_stack", "root", SERVICE, 0o750),
        ("/var/lib/gpu_stack", SERVICE, SERVICE, 0o750),
        ("/var/log/gpu_stack", SERVICE, SERVICE, 0o750),
    ],
)
def test_directories(host, path, owner, group, mode):
    d = host.file(path)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == (owner, group, mode)


def test_service_account_cannot_write_config(host):
    cmd = host.run("runuser -u %s -- touch /etc/gpu_stack/probe", SERVICE)
    assert cmd.rc != 0


def test_nvml_binding_importable_from_collection_dir(host):
    # Debian 12 has no distribution package: the pinned wheel's module is used.
    cmd = host.run(
        "python3 -c 'import sys; sys.path.insert(0, \"/opt/gpu_stack/python\"); "
        "import pynvml; print(pynvml.__file__)'"
    )
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "/opt/gpu_stack/python/pynvml.py"
    f = host.file("/opt/gpu_stack/python/pynvml.py")
    assert (f.user, f.mode) == ("root", 0o644)


def test_sysctl_persisted_and_applied(host):
    conf = host.file("/etc/sysctl.d/60-gpu-stack.conf")
    assert conf.contains("net.core.somaxconn=4096")
    assert host.sysctl("net.core.somaxconn") == 4096


UBUNTU = ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\n'
          'VERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n')


@pytest.fixture(scope="module")
def ubuntu(host):
    """The stand-in says it is Ubuntu 24.04 (os-release bind-mounted over), for the duration."""
    written = host.run("printf '%%s' %s > /var/tmp/os-release-ubuntu && mount --bind /var/tmp/os-release-ubuntu "
                       "/usr/lib/os-release", UBUNTU)
    assert written.rc == 0, written.stderr
    yield
    host.run("umount /usr/lib/os-release")


@pytest.mark.parametrize("role", ["common", "nvidia_driver", "cuda", "nvidia_container_toolkit", "gpu_tuning",
                                  "conda_env", "model_storage", "serving", "observability"])
def test_every_role_refuses_an_untested_operating_system(ubuntu, run_playbook, inventory_name, role):
    rc, out = run_playbook("molecule/common/any_role.yml", inventory_name, {"role": role})
    assert rc != 0, out[-3000:]
    assert "%s: Ubuntu 24.04" % role in out and "is not supported" in out, out[-3000:]
    assert "tested on Debian 12 (bookworm) and 13 (trixie) only" in out and "Nothing was changed" in out
