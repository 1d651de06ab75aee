"""The cuda role with the distribution's real toolkit on top of the real driver packages."""
import pytest

# The pins of roles/cuda/vars per release: (toolkit version, release).
PINNED = {"bookworm": ("11.8.89", "11.8"), "trixie": ("12.4.131", "12.4")}


@pytest.fixture(scope="module")
def pinned(host):
    return PINNED[host.system_info.codename]


def test_toolkit_installed_pinned_and_held(host, pinned):
    version = pinned[0]
    package = host.package("nvidia-cuda-toolkit")
    assert package.is_installed and package.version.startswith(version + "~")
    pref = host.file("/etc/apt/preferences.d/gpu-stack-cuda.pref")
    assert (pref.user, pref.group, pref.mode) == ("root", "root", 0o644)
    assert pref.contains("^Package: src:nvidia-cuda-toolkit$")
    assert "nvidia-cuda-toolkit" in host.check_output("apt-mark showhold").split()
    assert "Candidate: %s~" % version in host.check_output("apt-cache policy nvidia-cuda-toolkit")


def test_usual_layout_under_usr_local(host, pinned):
    release = pinned[1]
    home = "/usr/local/cuda-%s" % release
    d = host.file(home)
    assert d.is_directory and (d.user, d.group, d.mode) == ("root", "root", 0o755)
    assert host.file(home + "/bin/nvcc").linked_to == "/usr/bin/nvcc"
    assert host.file(home + "/bin/ptxas").exists
    assert host.file(home + "/lib64/libcudart.so").exists
    assert host.file(home + "/include/cuda_runtime.h").exists
    assert host.file(home + "/nvvm/libdevice").exists


def test_selected_through_alternatives(host, pinned):
    release = pinned[1]
    assert "Value: /usr/local/cuda-%s" % release in host.check_output("update-alternatives --query cuda")
    assert host.file("/usr/local/cuda").linked_to == "/usr/local/cuda-%s" % release


def test_nvcc_reports_the_pinned_version_in_a_login_shell(host, pinned):
    version, release = pinned
    out = host.check_output("bash -lc 'command -v nvcc; nvcc --version'")
    assert out.startswith("/usr/local/cuda/bin/nvcc\n")
    assert "release %s, V%s" % (release, version) in out


def test_ld_so_and_profile(host):
    assert host.file("/etc/ld.so.conf.d/gpu-stack-cuda.conf").contains("^/usr/local/cuda/lib64$")
    assert "libcudart.so" in host.check_output("ldconfig -p")
    profile = host.file("/etc/profile.d/gpu-stack-cuda.sh")
    assert profile.contains("/usr/local/cuda/bin") and "LD_LIBRARY_PATH=" not in profile.content_string


def test_probe_compiled_and_linked(host, pinned):
    release = pinned[1]
    probe = host.file(host.check_output("ls /opt/gpu_stack/cuda-probe/cuda_probe-%s-*", release))
    assert probe.exists and probe.mode & 0o111
    assert "not found" not in host.check_output("ldd %s", probe.path)
    # No GPU and no kernel module here: the probe runs and says so instead of crashing.
    run = host.run(probe.path)
    assert run.rc == 2 and "cudaGetDeviceCount" in run.stderr
