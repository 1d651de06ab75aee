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
