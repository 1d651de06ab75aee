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
