"""The Ray group of three stand-ins: nodes alive, placement group of the TP x PP shape, rendered
engine command lines, a killed worker reported, and the cross-node preflight refusing mismatches.
Cluster-wide tests run from node0 (the head) only."""

import json
import os
import shlex

import pytest

HEAD = "cluster-node0"
RAY_UNIT = "gpu-stack-cluster-trio-vllm-ray.service"
PYTHON = "/opt/gpu_stack/envs/ray/bin/python"
LAYOUT = {"nodes": 3, "tensor_parallel_size": 2, "pipeline_parallel_size": 3}
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
