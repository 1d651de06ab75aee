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


GATEWAY = "http://127.0.0.1:8080"
KEY = "demo-key-0123456789abcdef"
JOURNAL_UNITS = ("gpu-stack-serving-smollm2-135m-instruct-blue", "nginx")


def test_model_store_is_ext4_mounted_by_uuid(host, check_mounted_by_uuid):
    check_mounted_by_uuid(host, "/srv/models", "ext4")


def test_model_revision_is_verified_and_current(host):
    current = host.file("/srv/models/smollm2-135m-instruct/current")
    assert current.is_symlink and current.linked_to == "/srv/models/smollm2-135m-instruct/revisions/v0.1.2-q4_1"
    gguf = host.file("/srv/models/smollm2-135m-instruct/current/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert gguf.user == "root" and gguf.group == "llmserve" and gguf.mode == 0o640
    assert gguf.sha256sum == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert host.run("runuser -u llmserve -- touch /srv/models/smollm2-135m-instruct/current/x").rc != 0


def test_python_environment_imports_its_pins(host):
    out = host.check_output("/opt/gpu_stack/envs/tools/bin/python -c "
                            "'import jinja2, yaml; print(jinja2.__version__, yaml.__version__)'")
    assert out.split() == ["3.1.5", "6.0.3"]


def test_gpu_roles_left_no_trace_on_a_host_without_gpu(host):
    for package in ("nvidia-driver", "nvidia-container-toolkit", "nvidia-cuda-toolkit"):
        assert not host.package(package).is_installed, package
    assert not host.file("/etc/systemd/system/gpu-stack-tuning.service").exists


def test_chat_completion_through_the_gateway(host):
    body = ('{"model":"smollm2-135m-instruct","max_tokens":16,"temperature":0,'
            '"messages":[{"role":"user","content":"What is the capital of France? Answer in one sentence."}]}')
    out = host.run("curl -s --max-time 120 -o /tmp/site-answer.json -w '%%{http_code}' "
                   "-H 'Authorization: Bearer %s' -H 'Content-Type: application/json' "
                   "--data '%s' %s/v1/chat/completions" % (KEY, body, GATEWAY))
    assert out.stdout == "200", out.stdout + out.stderr
    answer = host.file("/tmp/site-answer.json").content_string
    assert "Paris" in answer, answer


def test_gateway_refuses_a_request_without_the_key(host):
    out = host.run("curl -s -o /dev/null -w '%%{http_code}' --max-time 10 %s/v1/models" % GATEWAY)
    assert out.stdout == "401"


def test_node_exporter_serves_host_gpu_and_engine_metrics(host):
    # Loopback only; the textfile collector carries the NVML collector's verdict (no GPU here)
    # and the serving collector's readiness probe; the systemd collector the engine unit.
    metrics = host.check_output("curl -sf --max-time 10 http://127.0.0.1:9100/metrics")
    assert 'gpu_stack_gpu_collector_up{reason="no_nvidia_device"} 0' in metrics
    assert ('node_systemd_unit_state{name="gpu-stack-serving-smollm2-135m-instruct-blue.service",state="active",type='
            in metrics)
    assert "gpu_stack_engine_ready" in metrics
    listeners = host.run("ss -Hltn").stdout.split()
    assert "127.0.0.1:9100" in listeners
    assert not [entry for entry in listeners if entry.endswith(":9100") and entry != "127.0.0.1:9100"]


def test_report_on_a_converged_host(run_playbook, inventory_name):
    rc, out = run_playbook("playbooks/report.yml", inventory_name)
    assert rc == 0, out
    for line in ("service account: llmserve", "environments:    tools", "models:          smollm2-135m-instruct",
                 "engine units:    gpu-stack-serving-smollm2-135m-instruct-blue.service running",
                 "gateway:         http://"):
        assert line in out, out


def test_blocked_preflight_stops_site_before_any_change(run_playbook, inventory_name, host):
    # A plan that cannot work on this host (a GPU engine, no GPU), plus a change the common
    # role would make if it ran: the preflight must stop the host first.
    assert not host.package("htop").is_installed
    rc, out = run_playbook("site.yml", inventory_name, {
        "gpu_stack_models": [{"name": "r1-qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "engine": "vllm"}],
        "common_packages_extra": ["htop"],
    })
    assert rc != 0, out
    assert "BLOCKED" in out and "engine vllm needs NVIDIA GPUs" in out
    assert not host.package("htop").is_installed


def test_settings_left_unset_are_derived_and_run(host):
    """The plan sets neither context nor sequences: the preflight derived them from this host's
    memory, and the engine runs with exactly those (each llama.cpp slot a whole context)."""
    state = host.file("/var/lib/gpu_stack/serving/smollm2-135m-instruct.json").content_string
    assert '"active": "blue"' in state
    args = host.check_output("ps -eo args | grep '[l]lama-server'").split()
    ctx, slots = int(args[args.index("--ctx-size") + 1]), int(args[args.index("--parallel") + 1])
    # SmolLM2 takes 8192 tokens at most; the derived policy serves up to 4 llama.cpp slots.
    assert slots == 4 and ctx == 8192 * slots, args


def test_old_plan_variables_are_refused_before_any_change(run_playbook, inventory_name, host):
    assert not host.package("htop").is_installed
    rc, out = run_playbook("site.yml", inventory_name, {"preflight_max_num_seqs": 2, "common_packages_extra": ["htop"]})
    assert rc != 0, out
    assert "preflight_max_num_seqs is set" in out and "gpu_stack_models" in out and "Nothing was changed" in out
    assert not host.package("htop").is_installed
