"""gpu_facts and the preflight playbook against real hosts without a GPU."""
import pytest


@pytest.fixture(scope="module")
def gpu(ansible_host):
    result = ansible_host.ansible("llmops.gpu_stack.gpu_facts", check=False)
    return result["ansible_facts"]["gpu"]


@pytest.fixture(scope="module")
def debian_major(host):
    return host.system_info.release.split(".")[0]


def test_no_gpu_on_the_pci_bus(gpu):
    # The stand-in host sees the build machine's PCI bus, which has no NVIDIA device.
    assert gpu["status"] == "no_nvidia_device"
    assert gpu["pci_devices"] == [] and gpu["pci_gpu_count"] == 0
    assert gpu["gpus"] == [] and gpu["gpu_count"] == 0
    assert gpu["nvswitch_present"] is False
    assert "no NVIDIA GPU on the PCI bus" in gpu["reason"]


def test_nvml_answer_matches_the_installed_stack(gpu, debian_major):
    if debian_major == "13":
        # The real libnvidia-ml1 loads; with no kernel module NVML says the driver is not loaded.
        assert gpu["nvml_status"] == "driver_not_loaded", gpu["reason"]
    else:
        # The pinned binding is there, the driver's library is not.
        assert gpu["nvml_status"] == "library_missing", gpu["reason"]
        assert "libnvidia-ml.so.1" in gpu["reason"]
    assert gpu["driver_version"] is None


def test_bindings_missing_names_the_fix(ansible_host, debian_major, host):
    if debian_major == "13":
        pytest.skip("Debian 13 has the distribution's python3-pynvml on the system path")
    result = ansible_host.ansible("llmops.gpu_stack.gpu_facts", "bindings_path=/nonexistent", check=False)
    gpu = result["ansible_facts"]["gpu"]
    assert gpu["nvml_status"] == "bindings_missing"
    assert gpu["status"] == "no_nvidia_device"


def test_check_mode_is_supported(ansible_host):
    result = ansible_host.ansible("llmops.gpu_stack.gpu_facts", check=True)
    assert result.get("changed") is False
    assert result["ansible_facts"]["gpu"]["status"] == "no_nvidia_device"


def test_preflight_passes_the_demo_cpu_plan(run_playbook, inventory_name):
    rc, out = run_playbook("playbooks/preflight.yml", inventory_name)
    assert rc == 0, out
    assert inventory_name in out and " ok " in out


def test_preflight_is_read_only_in_check_mode(run_playbook, inventory_name):
    rc, out = run_playbook("playbooks/preflight.yml", inventory_name, check=True)
    assert rc == 0, out
    assert "changed=0" in out


@pytest.mark.parametrize(
    "plan,expected",
    [
        # A GPU engine on a host without GPUs.
        ({"preflight_model": "deepseek-r1-distill-qwen-7b", "preflight_engine": "vllm"},
         "engine vllm needs NVIDIA GPUs"),
        # The full DeepSeek-V3 on the CPU: hundreds of GiB of weights do not fit in RAM.
        ({"preflight_model": "deepseek-v3", "preflight_dtype": "Q4_K_M"}, "model does not fit in RAM"),
        # A model path with a space, refused before anything is written.
        ({"preflight_model_path": "/srv/my models/smollm2"}, "model_path"),
        # Model storage on the container's overlay file system, not ext4/xfs.
        ({"preflight_model_path": "/srv/models/smollm2"}, "fs_type"),
    ],
)
def test_preflight_blocks_plans_that_cannot_work(run_playbook, inventory_name, plan, expected):
    rc, out = run_playbook("playbooks/preflight.yml", inventory_name, plan)
    assert rc != 0, out
    assert "BLOCKED" in out
    assert expected in out, out
