"""gpu_facts and the preflight playbook against real hosts without a GPU."""
import os
import subprocess

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


def model(**keys):
    return {"gpu_stack_models": [dict({"name": "m", "profile": "smollm2-135m-instruct", "engine": "llama_cpp",
                                       "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "dtype": "Q4_1"}, **keys)]}


@pytest.mark.parametrize(
    "plan,expected",
    [
        # A GPU engine on a host without GPUs.
        ({"gpu_stack_models": [{"name": "r1-qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "engine": "vllm"}]},
         "engine vllm needs NVIDIA GPUs"),
        # The full DeepSeek-V3 on the CPU: hundreds of GiB of weights do not fit in RAM.
        ({"gpu_stack_models": [{"name": "v3", "profile": "deepseek-v3", "engine": "llama_cpp",
                                "file": "DeepSeek-V3-Q4_K_M.gguf", "dtype": "Q4_K_M"}]},
         "does not fit in RAM"),
        # A model path with a space, refused before anything is written.
        (model(model_path="/srv/my models/smollm2"), "model_path"),
        # Model storage on the container's overlay file system, not ext4/xfs.
        (dict(model(), model_storage_allowed_fs_types=["ext4", "xfs"]), "fs_type"),
    ],
)
def test_preflight_blocks_plans_that_cannot_work(run_playbook, inventory_name, plan, expected):
    rc, out = run_playbook("playbooks/preflight.yml", inventory_name, plan)
    assert rc != 0, out
    assert "BLOCKED" in out
    assert expected in out, out


@pytest.mark.parametrize(
    "plan,expected",
    [
        (model(profile="deepseek-v4"), "gpu_stack_models[0].profile"),
        (model(tensor_parallel_size=0), "gpu_stack_models[0].tensor_parallel_size"),
        ({"gpu_stack_models": [{"name": "m", "profile": "smollm2-135m-instruct", "colour": "blue"}]}, "colour"),
        ({"preflight_model": "deepseek-r1-distill-qwen-7b"}, "preflight_model is set"),
    ],
)
def test_preflight_refuses_a_plan_it_cannot_read(run_playbook, inventory_name, plan, expected):
    rc, out = run_playbook("playbooks/preflight.yml", inventory_name, plan)
    assert rc != 0, out
    assert expected in out, out


def test_preflight_refuses_a_host_without_a_plan(ansible_host, tmp_path, standin_inventory):
    """An inventory without gpu_stack_models: no plan to check, so the preflight refuses."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(project, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(project, "build", "collections"))
    inventory = standin_inventory(tmp_path / "inventory.json", ansible_host.backend.host)
    run = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(project, "playbooks", "preflight.yml")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=300, check=False)
    assert run.returncode != 0, run.stdout
    assert "gpu_stack_models is not set for %s" % ansible_host.backend.host in run.stdout, run.stdout[-3000:]
