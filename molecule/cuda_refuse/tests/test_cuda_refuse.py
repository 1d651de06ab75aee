"""The cuda role's fast scenario: the refusal installed nothing; two toolkits side by side,
selected through update-alternatives, reached through the profile script and ld.so."""
import pytest


def test_refused_toolkit_installed_nothing(host):
    assert not host.package("nvidia-cuda-toolkit").is_installed
    assert not host.file("/etc/apt/preferences.d/gpu-stack-cuda.pref").exists
    assert not host.file("/etc/apt/sources.list.d/gpu-stack-distribution-components.sources").exists
    assert "non-free" not in host.check_output("apt-get indextargets --format '$(COMPONENT)'")


def test_both_toolkits_registered_and_the_pinned_one_selected(host):
    query = host.check_output("update-alternatives --query cuda")
    assert "Link: /usr/local/cuda" in query
    assert "Value: /usr/local/cuda-11.8" in query
    assert "Alternative: /usr/local/cuda-11.8\nPriority: 118" in query
    assert "Alternative: /usr/local/cuda-12.2\nPriority: 122" in query
    assert "Status: manual" in query
    link = host.file("/usr/local/cuda")
    assert link.is_symlink and link.linked_to == "/usr/local/cuda-11.8"


@pytest.mark.parametrize("release, version", [("11.8", "11.8.89"), ("12.2", "12.2.140")])
def test_each_toolkit_reports_its_version(host, release, version):
    out = host.check_output("/usr/local/cuda-%s/bin/nvcc --version", release)
    assert "release %s, V%s" % (release, version) in out


def test_login_shell_finds_the_selected_toolkit(host):
    out = host.check_output("bash -lc 'command -v nvcc; nvcc --version; echo CUDA_HOME=$CUDA_HOME'")
    assert out.startswith("/usr/local/cuda/bin/nvcc\n")
    assert "release 11.8, V11.8.89" in out and "CUDA_HOME=/usr/local/cuda" in out
    profile = host.file("/etc/profile.d/gpu-stack-cuda.sh")
    assert (profile.user, profile.group, profile.mode) == ("root", "root", 0o644)
    assert "LD_LIBRARY_PATH=" not in profile.content_string


def test_dynamic_linker_finds_libcudart_in_lib64(host):
    conf = host.file("/etc/ld.so.conf.d/gpu-stack-cuda.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o644)
    assert conf.contains("^/usr/local/cuda/lib64$")
    cache = host.check_output("ldconfig -p")
    assert "libcudart.so.11.0 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.11.0" in cache
    assert "libcudart.so.12" not in cache  # only the selected toolkit's libraries
