"""site.yml on a fresh stand-in host: every role's main effect is there."""


def test_service_account(host):
    user = host.user("llmserve")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"


def test_base_directories(host):
    for path, owner, mode in [
        ("/opt/gpu_stack", "root", 0o755),
        ("/etc/gpu_stack", "root", 0o750),
        ("/var/lib/gpu_stack", "llmserve", 0o750),
    ]:
        f = host.file(path)
        assert f.is_directory and f.user == owner and f.mode == mode, path


def test_nvml_binding(host):
    assert host.file("/opt/gpu_stack/python/pynvml.py").is_file


def test_report_and_preflight_on_a_converged_host(run_playbook, inventory_name):
    rc, out = run_playbook("site.yml", inventory_name)
    assert rc == 0, out
    assert "changed=0" in out
    assert "service account: llmserve" in out


def test_blocked_preflight_stops_site_before_any_change(run_playbook, inventory_name, host):
    # A plan that cannot work on this host (a GPU engine, no GPU), plus a change the common
    # role would make if it ran: the preflight must stop the host first.
    assert not host.package("htop").is_installed
    rc, out = run_playbook("site.yml", inventory_name, {
        "preflight_engine": "vllm",
        "preflight_model": "deepseek-r1-distill-qwen-7b",
        "common_packages_extra": ["htop"],
    })
    assert rc != 0, out
    assert "BLOCKED" in out and "engine vllm needs NVIDIA GPUs" in out
    assert not host.package("htop").is_installed
