"""The Ray group of three stand-ins: nodes alive, placement group of the TP x PP shape, rendered
engine command lines, a killed worker reported, and the cross-node preflight refusing mismatches.
Cluster-wide tests run from node0 (the head) only."""

import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid

import pytest


HEAD = "cluster-node0"
RAY_UNIT = "gpu-stack-cluster-trio-vllm-ray.service"
PYTHON = "/opt/gpu_stack/envs/ray/bin/python"
LAYOUT = {"nodes": 3, "tensor_parallel_size": 2, "pipeline_parallel_size": 3}
KEY = "cluster-test-key-0123456789abcdef"
# Each group model's gateway on the head: (gateway port from the plan, the engine's cluster.port).
GATEWAYS = {"trio-vllm": (8080, 8000), "trio-sglang": (8081, 30000)}
STANDIN = os.path.join(os.path.dirname(__file__), "..", "files", "engine_standin.py")
JOURNAL_UNITS = ("nginx.service", "gpu-stack-test-engine.service")
# The Ray cluster as the tests found it (nodes, resources, placement groups), for the record.
RESULTS = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "benchmarks", "results", "cluster.json")


def record(key, value):
    """Adds key: value to RESULTS (written again after each test that records)."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    try:
        with open(RESULTS, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = {}
    data[key] = value
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)


def head_only(inventory_name):
    if inventory_name != HEAD:
        pytest.skip("a group test: runs once, on the head")


def rendered(host, name):
    return json.loads(host.file("/etc/gpu_stack/cluster/%s.json" % name).content_string)


def ray_script(host, code):
    cmd = host.run("%s -c %s" % (PYTHON, shlex.quote(code)))
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout.strip().splitlines()[-1])


def test_ray_unit_running_on_every_node(host):
    units = [RAY_UNIT]
    assert host.service(RAY_UNIT).is_running, units
    assert host.service(RAY_UNIT).is_enabled


def test_every_node_alive_in_ray(host, inventory_name):
    head_only(inventory_name)
    nodes = ray_script(host, "import json, ray; ray.init(address='auto', logging_level='ERROR'); "
                             "print(json.dumps([[n['NodeManagerAddress'], n['Alive'], n['Resources'].get('GPU'), "
                             "n['Resources'].get('CPU'), n['NodeManagerHostname']] for n in ray.nodes()]))")
    record("ray_nodes", [dict(zip(("address", "alive", "gpus", "cpus", "hostname"), n)) for n in nodes])
    alive = [n for n in nodes if n[1]]
    assert len(alive) == 3, nodes
    assert all(n[2] == 2 for n in alive), nodes
    info = rendered(host, "trio-vllm")
    assert sorted(n[0] for n in alive) == sorted(set(n[0] for n in alive))
    assert info["address"] in [n[0] for n in alive]


def test_placement_group_of_the_tp_pp_shape_is_ready(host, inventory_name):
    head_only(inventory_name)
    code = ("import json, ray\n"
            "from ray.util.placement_group import placement_group, remove_placement_group\n"
            "ray.init(address='auto', logging_level='ERROR')\n"
            "pg = placement_group([{'GPU': 2}] * 3, strategy='STRICT_SPREAD')\n"
            "ready = pg.wait(60)\n"
            "too_big = placement_group([{'GPU': 2}] * 4, strategy='STRICT_SPREAD')\n"
            "print(json.dumps([ready, too_big.wait(5)]))\n"
            "remove_placement_group(pg); remove_placement_group(too_big)\n")
    ready, too_big = ray_script(host, code)
    record("placement_groups", {"3 x {GPU: 2} STRICT_SPREAD ready in 60 s": ready,
                                "4 x {GPU: 2} STRICT_SPREAD ready in 5 s": too_big})
    assert ready is True
    # The shape check can fail: one bundle more than the group has nodes never becomes ready.
    assert too_big is False


def test_vllm_command_lines(host, inventory_name):
    info = rendered(host, "trio-vllm")
    assert info["environment"] == {"VLLM_HOST_IP": info["address"], "NCCL_SOCKET_IFNAME": "eth1",
                                   "GLOO_SOCKET_IFNAME": "eth1"}
    if inventory_name == HEAD:
        assert info["ray_start"] == ["ray", "start", "--block", "--head", "--port=6379",
                                     "--node-ip-address=" + info["address"], "--num-gpus=2", "--disable-usage-stats",
                                     "--include-dashboard=false"]
        argv = info["engine_argv"]
        assert argv[:2] == ["vllm", "serve"]
        joined = " ".join(argv)
        assert "--tensor-parallel-size 2 --pipeline-parallel-size 3" in joined
        assert argv[-2:] == ["--distributed-executor-backend", "ray"]
        unit = host.file("/etc/systemd/system/gpu-stack-cluster-trio-vllm.service").content_string
        assert "/opt/gpu_stack/envs/ray/bin/vllm serve" in unit
        assert not host.service("gpu-stack-cluster-trio-vllm.service").is_running
    else:
        assert info["ray_start"] == ["ray", "start", "--block", "--address=%s:6379" % info["head_address"],
                                     "--node-ip-address=" + info["address"], "--num-gpus=2", "--disable-usage-stats"]
        assert info["engine_argv"] == []
        assert not host.file("/etc/systemd/system/gpu-stack-cluster-trio-vllm.service").exists
    env = host.file("/etc/gpu_stack/cluster/trio-vllm.env").content_string
    assert "VLLM_HOST_IP=%s\n" % info["address"] in env


def test_sglang_command_lines(host):
    info = rendered(host, "trio-sglang")
    argv = info["engine_argv"]
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    joined = " ".join(argv)
    assert "--tp-size 6" in joined
    assert ("--dist-init-addr %s:5000 --nnodes 3 --node-rank %s --dist-timeout 3600"
            % (info["head_address"], info["rank"])) in joined
    unit = host.file("/etc/systemd/system/gpu-stack-cluster-trio-sglang.service").content_string
    assert "--network host --ipc host --shm-size 1g" in unit
    assert "EnvironmentFile=/etc/gpu_stack/cluster/trio-sglang.env" in unit
    assert not host.service("gpu-stack-cluster-trio-sglang.service").is_running


def test_gateway_on_the_head_only(host, inventory_name):
    for name, (gateway_port, engine_port) in GATEWAYS.items():
        site = host.file("/etc/nginx/conf.d/gpu-stack-%s.conf" % name)
        if inventory_name != HEAD:
            assert not site.exists
            continue
        assert (site.user, site.mode) == ("root", 0o600)
        text = site.content_string
        assert "listen 0.0.0.0:%d;" % gateway_port in text
        assert "server 127.0.0.1:%d;" % engine_port in text
        assert host.socket("tcp://0.0.0.0:%d" % gateway_port).is_listening
    if inventory_name == HEAD:
        assert host.service("nginx.service").is_running and host.service("nginx.service").is_enabled


# Run on the head (the stand-ins have Python, not curl): one request to the trio-vllm gateway,
# printed as [status, X-Gpu-Stack-Instance, body parsed as JSON or null].
ASK = """
import json, sys, urllib.error, urllib.request
path, body, key = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
request = urllib.request.Request("http://127.0.0.1:8080" + path, data=body.encode() if body else None,
                                 headers=headers)
try:
    answer = urllib.request.urlopen(request, timeout=30)
except urllib.error.HTTPError as error:
    answer = error
text = answer.read().decode("utf-8", "replace")
try:
    parsed = json.loads(text)
except ValueError:
    parsed = None
print(json.dumps([answer.status, answer.headers.get("X-Gpu-Stack-Instance", ""), parsed]))
"""


def ask(host, path, body=None, key=KEY):
    """(status, instance that answered, parsed JSON body or None) from the head's trio-vllm gateway."""
    out = host.run("python3 -c %s %s %s %s" % (shlex.quote(ASK), shlex.quote(path),
                                               shlex.quote(json.dumps(body) if body is not None else ""),
                                               shlex.quote(key)))
    assert out.rc == 0, out.stderr
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def test_gateway_in_front_of_the_group_engine(host, inventory_name):
    head_only(inventory_name)
    one_token = {"model": "trio-vllm", "prompt": "Hi", "max_tokens": 1}
    # Before the engine runs (no GPU here), nginx has nothing to pass the request to.
    assert ask(host, "/v1/completions", one_token)[0] == 502
    subprocess.run(["podman", "cp", STANDIN, "%s:/usr/local/bin/engine_standin.py" % inventory_name], check=True)
    started = host.run("systemd-run --unit gpu-stack-test-engine python3 /usr/local/bin/engine_standin.py 8000 trio-vllm")
    assert started.rc == 0, started.stderr
    try:
        deadline = time.time() + 20
        while ask(host, "/v1/models")[0] != 200 and time.time() < deadline:
            time.sleep(0.5)
        status, _instance, models = ask(host, "/v1/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["trio-vllm"], models
        assert ask(host, "/v1/completions", one_token, key="")[0] == 401
        assert ask(host, "/v1/completions", one_token, key="not-a-key-of-this-gateway")[0] == 401
        assert ask(host, "/v1/completions", one_token)[:2] == (200, "trio-vllm-head")
        status, _instance, error = ask(host, "/v1/completions", dict(one_token, model="other"))
        assert status == 404 and error["error"]["code"] == "model_not_found", error
        # The plan's max_model_len (8192) reaches the gateway of a group model too.
        status, _instance, error = ask(host, "/v1/completions", dict(one_token, max_tokens=8192))
        assert status == 400 and error["error"]["code"] == "context_length_exceeded", error
        status, _instance, error = ask(host, "/v1/embeddings", {"model": "trio-vllm", "input": "Hi"})
        assert status == 404 and error["error"]["type"] == "invalid_request_error", error
        # One audit line: the key and the prompt only as sha256, the engine's token counts.
        prompt = "Hello from the audit test %s" % uuid.uuid4().hex
        status, _instance, answer = ask(host, "/v1/completions", dict(one_token, prompt=prompt, max_tokens=3))
        assert status == 200 and answer["usage"]["completion_tokens"] == 3, answer
        digest = hashlib.sha256(json.dumps(prompt).encode()).hexdigest()
        log = host.file("/var/log/nginx/gpu-stack-trio-vllm-audit.log")
        deadline = time.time() + 10
        while digest not in log.content_string and time.time() < deadline:
            time.sleep(0.5)
        (line,) = [json.loads(entry) for entry in log.content_string.splitlines() if digest in entry]
        record("head_gateway_audit_line", line)
        assert (line["model"], line["status"], line["instance"]) == ("trio-vllm", 200, "trio-vllm-head")
        assert (line["prompt_tokens"], line["completion_tokens"]) == (answer["usage"]["prompt_tokens"], 3)
        assert line["caller"] == hashlib.sha256(KEY.encode()).hexdigest()
        assert prompt not in log.content_string and KEY not in log.content_string
        assert (log.user, log.mode) == ("www-data", 0o640)
    finally:
        host.run("systemctl stop gpu-stack-test-engine.service")
    # The engine gone: the gateway passes the failure on, it does not answer for the engine.
    assert ask(host, "/v1/completions", one_token)[0] == 502


def test_preflight_refuses_a_node_without_ray(run_playbook, inventory_name):
    head_only(inventory_name)
    rc, out = run_playbook("molecule/cluster/mismatch.yml", "ray_trio:localhost", {"mismatch": "python"})
    assert rc != 0, out
    assert "Ray version differs: node cluster-node2 has none where the other nodes have 2.58.0" in out
    assert "(on cluster-node2)" in out


def test_acceptance_refuses_hosts_without_gpus(run_playbook, inventory_name):
    head_only(inventory_name)
    rc, out = run_playbook("playbooks/cluster_acceptance.yml", "ray_trio:localhost",
                           {"cluster_acceptance_group": "ray_trio", "cluster_acceptance_min_busbw_gbps": 1,
                            "cluster_acceptance_min_output_tokens_per_s": 1, "cluster_acceptance_interface": "eth1",
                            "cluster_acceptance_model": "trio-vllm"})
    assert rc != 0, out
    assert "cluster-node0 has 0 usable GPUs" in out
    assert "Nothing was measured or changed" in out
    rc, out = run_playbook("playbooks/cluster_acceptance.yml", "ray_trio:localhost", {"cluster_acceptance_group": "ray_trio"})
    assert rc != 0, out
    assert "the thresholds are yours" in out


def test_zz_killed_worker_is_reported(host, inventory_name, run_playbook):
    head_only(inventory_name)
    health = "%s /usr/local/libexec/gpu-stack/cluster-health --address %s:6379 --expect 3" % (
        PYTHON, rendered(host, "trio-vllm")["address"])
    before = host.run(health)
    record("health_before_kill", before.stdout.strip())
    assert before.rc == 0
    rc, out = run_playbook("molecule/cluster/kill_worker.yml", "ray_trio")
    record("health_after_kill", [line.strip() for line in out.splitlines() if "nodes alive" in line][:3])
    assert rc == 0, out
    assert "2 of 3 nodes alive; lost:" in out


def test_zzz_preflight_refuses_a_node_without_the_interface(run_playbook, inventory_name):
    head_only(inventory_name)
    rc, out = run_playbook("molecule/cluster/mismatch.yml", "ray_trio:localhost", {"mismatch": "interface"})
    assert rc != 0, out
    assert "node cluster-node1 has no interface eth1 (it has: eth0, lo)" in out
