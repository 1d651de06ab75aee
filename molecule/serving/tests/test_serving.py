"""The serving role on a stand-in host: a real model answering through the gateway."""
import json
import shlex
import time

import pytest

KEY = "molecule-test-key-0123456789abcdef"
GATEWAY = "http://127.0.0.1:8080"
ENGINE = "http://127.0.0.1:8001"
UNIT = "gpu-stack-serving-demo-blue.service"
JOURNAL_UNITS = (UNIT, "nginx.service")
ACCESS_LOG = "/var/log/nginx/gpu-stack-demo-access.log"
QUESTION = "What is the capital of France? Answer in one sentence."
READY_MARK = "/run/gpu-stack-liveness-demo-blue.ready"
SLOW_IMAGE = "localhost/gpu-stack/llama-cpp-slow:test"
# The test engine: the real llama.cpp server, started SLOW_START seconds late, as a big model
# on a GPU engine takes minutes before /v1/models answers.
SLOW_START = 150


def wait_for(check, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError("waited %d s for %s" % (timeout, what))


def chat(host, key=KEY, question=QUESTION):
    body = json.dumps({"model": "smollm2-135m-instruct", "max_tokens": 24, "temperature": 0,
                       "messages": [{"role": "user", "content": question}]})
    cmd = ["curl", "-s", "-o", "/tmp/answer.json", "-w", "%{http_code}", "-H", "Content-Type: application/json",
           "--data", body, GATEWAY + "/v1/chat/completions"]
    if key:
        cmd[1:1] = ["-H", "Authorization: Bearer " + key]
    result = host.run(" ".join(shlex.quote(part) for part in cmd))
    return result.stdout.strip(), host.file("/tmp/answer.json").content_string


def wait_ready(host, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if host.run("curl -sf -o /dev/null --max-time 5 %s/v1/models", ENGINE).rc == 0:
            return time.time()
        time.sleep(1)
    raise AssertionError("engine not ready within %d s" % timeout)


def test_answers_through_the_gateway_with_the_key(host):
    status, body = chat(host)
    assert status == "200", body
    answer = json.loads(body)["choices"][0]["message"]["content"]
    assert "Paris" in answer, answer


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef"])
def test_refuses_requests_without_a_valid_key(host, key):
    status, body = chat(host, key=key)
    assert status == "401", body
    assert "invalid API key" in body


def test_models_and_presets_through_the_gateway(host):
    models = host.run("curl -sf -H 'Authorization: Bearer %s' %s/v1/models", KEY, GATEWAY)
    assert models.rc == 0
    assert [m["id"] for m in json.loads(models.stdout)["data"]] == ["smollm2-135m-instruct"]
    presets = host.run("curl -sf -H 'Authorization: Bearer %s' %s/v1/presets", KEY, GATEWAY)
    assert presets.rc == 0
    assert json.loads(presets.stdout)["data"]["reasoning"]["temperature"] == 0.6


def test_engine_listens_on_loopback_only(host):
    listeners = host.run("ss -Hltn").stdout
    assert "127.0.0.1:8001" in listeners
    assert "0.0.0.0:8001" not in listeners and "*:8001" not in listeners and "[::]:8001" not in listeners
    assert "0.0.0.0:8080" in listeners


def test_engine_runs_as_the_service_account(host):
    procs = host.run("ps -eo user:20,args").stdout.splitlines()
    engine = [p for p in procs if "llama-server" in p and "podman" not in p]
    assert engine, procs
    assert all(p.split()[0] == "llmserve" for p in engine), engine


def test_container_is_locked_down(host):
    inspect = json.loads(host.check_output("podman container inspect demo-blue"))[0]
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    assert mounts["/models"]["RW"] is False
    assert inspect["HostConfig"]["Privileged"] is False
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert inspect["EffectiveCaps"] in (None, [])
    write = host.run("podman exec demo-blue touch /models/should-not-exist")
    assert write.rc != 0


def test_access_log_has_the_fields_and_no_prompt(host):
    chat(host)
    lines = [json.loads(line) for line in host.file(ACCESS_LOG).content_string.splitlines() if line]
    ok = [entry for entry in lines if entry["path"] == "/v1/chat/completions" and entry["status"] == 200]
    assert ok, lines
    entry = ok[-1]
    for field in ("time", "caller", "request_bytes", "response_bytes", "latency_s", "backend", "instance"):
        assert field in entry, field
    assert len(entry["caller"]) == 16 and entry["caller"] != KEY[:16]
    assert entry["backend"] == "127.0.0.1:8001" and entry["instance"] == "demo-blue"
    assert entry["request_bytes"] > 0 and entry["response_bytes"] > 0
    content = host.file(ACCESS_LOG).content_string
    assert "capital of France" not in content and KEY not in content


def test_units_enabled(host):
    assert host.service(UNIT).is_running
    assert host.service("gpu-stack-serving-demo-blue-liveness.timer").is_enabled
    assert host.service("nginx").is_enabled


def test_killed_engine_comes_back(host):
    before = int(host.check_output("systemctl show -p NRestarts --value %s", UNIT))
    host.run("pkill -KILL -f [l]lama-server")
    time.sleep(1)
    start = time.time()
    wait_ready(host, timeout=90)
    after = int(host.check_output("systemctl show -p NRestarts --value %s", UNIT))
    assert after == before + 1
    print("engine back %.1f s after the kill" % (time.time() - start))
    status, body = chat(host)
    assert status == "200", body


def test_hung_engine_is_restarted_by_the_liveness_timer(host):
    # SIGSTOP keeps the process (systemd sees nothing wrong); only the liveness check can notice.
    # The [l] keeps pkill's own shell, whose command line holds the pattern, out of the match.
    # A restart asked for with systemctl does not count in NRestarts: a new invocation does.
    invocation = host.check_output("systemctl show -p InvocationID --value %s", UNIT)
    # Hung once it has been ready: the liveness check has seen this invocation answer.
    wait_for(lambda: host.file(READY_MARK).exists and host.file(READY_MARK).content_string.strip() == invocation,
             30, "the liveness check to see the engine ready")
    assert host.run("pkill -STOP -f [l]lama-server").rc == 0
    deadline = time.time() + 180
    while time.time() < deadline:
        if host.check_output("systemctl show -p InvocationID --value %s", UNIT) not in ("", invocation):
            break
        time.sleep(2)
    else:
        raise AssertionError("the liveness timer did not restart the stopped engine")
    assert "restarting" in host.check_output("journalctl --no-pager -u %s-liveness.service", UNIT[:-len(".service")])
    wait_ready(host, timeout=120)


def test_state_records_blue_active(host):
    state = json.loads(host.file("/var/lib/gpu_stack/serving/demo.json").content_string)
    assert state["active"] == "blue" and state["previous"] is None
    assert state["instances"]["blue"]["path"] == "/srv/models/smollm2-135m-instruct/revisions/q4_1"
    assert state["instances"]["blue"]["port"] == 8001
    mounts = json.loads(host.check_output("podman container inspect demo-blue"))[0]["Mounts"]
    assert [m["Source"] for m in mounts if m["Destination"] == "/models"] == [state["instances"]["blue"]["path"]]
    assert not host.service("gpu-stack-serving-demo-green.service").is_running
    headers = host.check_output("curl -s -o /dev/null -D - -H 'Authorization: Bearer %s' %s/v1/models", KEY, GATEWAY)
    assert "x-gpu-stack-instance: demo-blue" in headers.lower()


@pytest.fixture(scope="module")
def slow_engine(host):
    """The engine image, started SLOW_START seconds late (built inside the stand-in from the image
    the role loaded; no registry)."""
    containerfile = ("FROM localhost/gpu-stack/llama-cpp:latest\n"
                     "ENTRYPOINT [\"/bin/sh\", \"-c\", \"sleep %d; exec /usr/local/bin/llama-server \\\"$@\\\"\", "
                     "\"llama-server\"]\n" % SLOW_START)
    written = host.run("mkdir -p /var/tmp/slow-engine && printf '%%s' %s > /var/tmp/slow-engine/Containerfile",
                       containerfile)
    assert written.rc == 0, written.stderr
    built = host.run("podman build --quiet -t %s /var/tmp/slow-engine", SLOW_IMAGE)
    assert built.rc == 0, built.stderr
    return SLOW_IMAGE


def test_a_slow_engine_is_not_restarted_while_it_loads(host, run_playbook, inventory_name, slow_engine):
    """The liveness check (every 10 s, 2 failures, 20 s timeout) leaves an instance that has not
    been ready since its start alone until the readiness timeout (derived: 180 s base for this
    small model), so a model that takes SLOW_START s to load comes up instead of being restarted in
    a loop; the role's readiness gate waits for it."""
    began = time.time()
    rc, out = run_playbook("molecule/_shared/converge.yml", inventory_name,
                           {"serving_images": {"llama_cpp": slow_engine}})
    took = time.time() - began
    assert rc == 0, out[-4000:]
    assert took >= SLOW_START, took
    invocation = host.check_output("systemctl show -p InvocationID --value %s", UNIT)
    restarts = int(host.check_output("systemctl show -p NRestarts --value %s", UNIT))
    log = host.check_output("journalctl --no-pager -u gpu-stack-serving-demo-blue-liveness.service --since=-%ss",
                            str(int(took) + 5))
    assert "loading, not ready yet" in log, log[-2000:]
    assert "restarting" not in log, log[-2000:]
    assert restarts == 0
    status, _body = chat(host)
    assert status == "200"
    print("slow engine: site run %.0f s, ready after loading %d s, not restarted (invocation %s)"
          % (took, SLOW_START, invocation))


def test_a_slow_engine_that_outlasts_its_readiness_timeout_is_restarted(
        host, run_playbook, inventory_name, slow_engine):
    """With a readiness timeout shorter than the load (60 s here), the role fails with the engine's
    log and the liveness check restarts the instance that never became ready."""
    invocation = host.check_output("systemctl show -p InvocationID --value %s", UNIT)
    host.run("systemctl restart %s", UNIT)
    rc, out = run_playbook("molecule/_shared/converge.yml", inventory_name,
                           {"serving_images": {"llama_cpp": slow_engine}, "serving_ready_timeout": 60})
    assert rc != 0
    assert "did not become ready within 60 s" in out, out[-3000:]
    wait_for(lambda: "not ready" in host.check_output(
        "journalctl --no-pager -u gpu-stack-serving-demo-blue-liveness.service -n 20"), 60,
        "the liveness check to restart the engine")
    assert host.check_output("systemctl show -p InvocationID --value %s", UNIT) != invocation
    log = host.check_output("journalctl --no-pager -u gpu-stack-serving-demo-blue-liveness.service -n 20")
    assert "after its start (allowed 60 s): restarting" in log, log


def test_zz_back_to_the_normal_engine(host, run_playbook, inventory_name):
    rc, out = run_playbook("molecule/_shared/converge.yml", inventory_name)
    assert rc == 0, out[-4000:]
    assert chat(host)[0] == "200"
