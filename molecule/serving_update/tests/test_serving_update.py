"""Blue/green model updates on a stand-in host: a real llama.cpp engine behind the gateway.

The tests run in file order and build on each other: r1 (converge) -> r2 under load -> faults
(checksum, never ready) -> r1 again and a crash right after the switch -> rollback -> an update
killed mid-run and run again -> an update in place -> diagnostics.
"""
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
sys.path.insert(0, os.path.join(PROJECT, "benchmarks"))
sys.path.insert(0, os.path.join(PROJECT, "molecule", "_shared"))
import gateway_client  # noqa: E402  pylint: disable=wrong-import-position,import-error
import load_generator  # noqa: E402  pylint: disable=wrong-import-position,import-error

KEY = "molecule-test-key-0123456789abcdef"
MODEL = "smollm2-135m-instruct"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GATEWAY = "http://127.0.0.1:8080"
STATE = "/var/lib/gpu_stack/serving/demo.json"
STORE = "/srv/models/" + MODEL
PORTS = {"blue": 8001, "green": 8002}
UNITS = {color: "gpu-stack-serving-demo-%s.service" % color for color in PORTS}
JOURNAL_UNITS = tuple(UNITS.values()) + ("nginx.service",)
RESULTS = os.path.join(PROJECT, "benchmarks", "results", "serving_update.json")
FIGURES = {}


def source(kind="good", **extra):
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "src", kind, MODEL_FILE)
    return dict({"type": "controller", "path": path}, **extra)


def revision(rev, kind="good", **extra):
    return {"update_model": {"name": MODEL, "revision": rev, "source": source(kind, **extra)}}


def state(host):
    return json.loads(host.file(STATE).content_string)


def active_units(host):
    return [color for color, unit in UNITS.items() if host.service(unit).is_running]


def ask(host):
    """One completion through the gateway: (HTTP status, instance that answered)."""
    return gateway_client.ask(host, GATEWAY, MODEL, KEY)


def assert_serving(host, color, rev):
    """Exactly `color` runs, on `rev`, the gateway routes to it and it answers."""
    recorded = state(host)
    assert recorded["active"] == color, recorded
    assert recorded["instances"][color]["path"] == "%s/revisions/%s" % (STORE, rev), recorded
    assert active_units(host) == [color]
    conf = host.file("/etc/nginx/conf.d/gpu-stack-demo.conf").content_string
    assert "server 127.0.0.1:%d;" % PORTS[color] in conf
    assert "server 127.0.0.1:%d" % PORTS["green" if color == "blue" else "blue"] not in conf
    status, instance = ask(host)
    assert (status, instance) == ("200", "demo-" + color)
    mount = json.loads(host.check_output("podman container inspect demo-%s" % color))[0]["Mounts"]
    assert [m["Source"] for m in mount if m["Destination"] == "/models"] == ["%s/revisions/%s" % (STORE, rev)]


def current(host):
    return host.check_output("readlink %s/current" % STORE)


class Load:
    """The load generator inside the stand-in host, driven from here. It runs until stop() (or
    its own bounds: `requests` in `duration` seconds), so a test loads the gateway for as long
    as what it measures lasts, plus a margin before and after."""

    STOP_FILE = "/tmp/load.stop"

    def __init__(self, container, requests, duration, concurrency=4):
        self.container = container
        subprocess.run(["podman", "cp", os.path.join(PROJECT, "benchmarks", "load_generator.py"),
                        container + ":/tmp/load_generator.py"], check=True)
        subprocess.run(["podman", "exec", container, "rm", "-f", self.STOP_FILE], check=True)
        self.started = time.time()
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["podman", "exec", "-e", "GPU_STACK_API_KEY=" + KEY, container, "python3", "/tmp/load_generator.py",
             "--url", GATEWAY, "--model", MODEL, "--requests", str(requests), "--duration", str(duration),
             "--concurrency", str(concurrency), "--output", "/tmp/load.json", "--stop-file", self.STOP_FILE],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)

    def stop(self, after=0):
        """Let the load run `after` more seconds, then start no new request."""
        time.sleep(after)
        subprocess.run(["podman", "exec", self.container, "touch", self.STOP_FILE], check=True)

    def wait(self):
        out, _err = self.proc.communicate(timeout=900)
        assert self.proc.returncode == 0, out
        raw = subprocess.run(["podman", "exec", self.container, "cat", "/tmp/load.json"], check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        return json.loads(raw)


def changed_count(output):
    recap = [line for line in output.splitlines() if "changed=" in line and "ok=" in line]
    assert recap, output[-2000:]
    return sum(int(line.split("changed=")[1].split()[0]) for line in recap)


def test_plain_run_serves_blue_on_r1(host):
    assert_serving(host, "blue", "r1")
    assert state(host)["previous"] is None
    assert current(host) == "revisions/r1"
    assert host.service(UNITS["blue"]).is_enabled


def test_update_under_load_fails_no_request(host, run_playbook, inventory_name):
    # 4 requests a second for as long as the update (fetch, verify, start, gate, switch, drain,
    # stop) takes, with 15 s before and after; at most 1200 requests in 300 s.
    load = Load(inventory_name, requests=1200, duration=300)
    time.sleep(15)
    began = time.time()
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, revision("r2"))
    ended = time.time()
    load.stop(after=15)
    result = load.wait()
    assert rc == 0, out[-4000:]
    records = result["records"]
    phases = {
        "before": load_generator.summarize(records, None, began),
        "during": load_generator.summarize(records, began, ended),
        "after": load_generator.summarize(records, ended, None),
    }
    total = load_generator.summarize(records)
    window = load_generator.switch_window(records, "demo-blue", "demo-green")
    recorded = state(host)
    FIGURES["update_under_load"] = {
        "load": result["config"], "total": total, "phases": phases, "switch": window,
        "update_playbook_s": round(ended - began, 1), "switched_at": recorded.get("switched_at"),
    }
    print(json.dumps(FIGURES["update_under_load"], indent=1))
    assert total["sent"] >= 4 * (ended - began), total
    assert total["failed"] == 0, total
    assert phases["before"]["sent"] > 0 and phases["during"]["sent"] > 0 and phases["after"]["sent"] > 0, phases
    assert phases["before"]["instances"] == {"demo-blue": phases["before"]["sent"]}
    assert phases["after"]["instances"] == {"demo-green": phases["after"]["sent"]}
    assert_serving(host, "green", "r2")
    assert recorded["previous"] == "blue"
    assert recorded["instances"]["blue"]["path"] == STORE + "/revisions/r1"
    assert current(host) == "revisions/r2"
    assert host.service(UNITS["green"]).is_enabled and not host.service(UNITS["blue"]).is_enabled
    assert "drained" in out


def test_update_to_the_served_revision_changes_nothing(host, run_playbook, inventory_name):
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, revision("r2"))
    assert rc == 0, out[-4000:]
    assert changed_count(out) == 0, out[-4000:]
    assert_serving(host, "green", "r2")


def test_update_in_check_mode_changes_nothing(host, run_playbook, inventory_name):
    before = host.file(STATE).content_string
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, revision("r1"), check=True)
    assert rc == 0, out[-4000:]
    assert "will start on %s/revisions/r1" % STORE in out
    assert host.file(STATE).content_string == before
    assert_serving(host, "green", "r2")


def test_checksum_failure_leaves_the_old_instance_serving(host, run_playbook, inventory_name):
    bad = revision("r3", sha256={MODEL_FILE: "0" * 64})
    before = host.file(STATE).content_string
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, bad)
    assert rc != 0
    assert "failed at step 'fetch and verify'" in out, out[-4000:]
    assert "failed verification" in out and MODEL_FILE in out
    assert host.file(STATE).content_string == before
    assert not host.file(STORE + "/revisions/r3").exists
    assert current(host) == "revisions/r2"
    assert_serving(host, "green", "r2")


def test_never_ready_revision_times_out_and_the_old_instance_serves(host, run_playbook, inventory_name):
    before = host.file(STATE).content_string
    began = time.time()
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name,
                           dict(revision("r4", kind="truncated"), serving_ready_timeout=30))
    took = time.time() - began
    assert rc != 0
    assert "failed at step 'readiness'" in out, out[-4000:]
    assert "demo-blue" in out and "did not become ready within 30 s" in out
    assert "Last lines of gpu-stack-serving-demo-blue.service" in out
    # The engine's own complaint about the model, from its log tail.
    assert "llama" in out.split("Last lines of gpu-stack-serving-demo-blue.service", 1)[1].lower()
    FIGURES["never_ready"] = {"ready_timeout_s": 30, "update_playbook_s": round(took, 1)}
    assert host.file(STATE).content_string == before
    assert current(host) == "revisions/r2"
    assert_serving(host, "green", "r2")


def test_update_with_a_canary_under_load(host, run_playbook, inventory_name):
    load = Load(inventory_name, requests=480, duration=240, concurrency=2)
    time.sleep(5)
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name,
                           dict(revision("r1"), serving_canary_percent=30, serving_canary_seconds=20))
    load.stop(after=5)
    result = load.wait()
    assert rc == 0, out[-4000:]
    assert "canary passed" in out, out[-4000:]
    records = result["records"]
    total = load_generator.summarize(records)
    FIGURES["canary_update_under_load"] = {"canary_percent": 30, "canary_seconds": 20, "total": total}
    assert total["failed"] == 0, total
    # During the canary both instances answered.
    assert total["instances"].get("demo-blue", 0) > 0 and total["instances"].get("demo-green", 0) > 0, total
    assert_serving(host, "blue", "r1")


class Background:
    """ansible-playbook in the background, in its own session (a test can kill it whole), its
    output in a file (a pipe nobody reads would block it)."""

    def __init__(self, playbook, inventory_name, extra_vars):
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, "build", "collections"))
        cmd = ["ansible-playbook", os.path.join(PROJECT, playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               "--limit", inventory_name, "-e", json.dumps(extra_vars)]
        self.log = tempfile.TemporaryFile(mode="w+")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                     env=env, universal_newlines=True, start_new_session=True)

    def running(self):
        return self.proc.poll() is None

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def wait(self, timeout):
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.output()

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def test_crash_after_switch_is_rolled_back_automatically(host, inventory_name):
    assert_serving(host, "blue", "r1")
    # The new instance crashes right after the switch and stays down (systemd's own restart is
    # switched off for the test: a revision that crashes again at once looks the same to the
    # gateway). The update is still watching it: it switches back to blue by itself.
    dropin = "/run/systemd/system/%s.d" % UNITS["green"]
    host.run("mkdir -p %s && printf '[Service]\\nRestart=no\\n' > %s/no-restart.conf && systemctl daemon-reload"
             % (dropin, dropin))
    try:
        load = Load(inventory_name, requests=600, duration=150, concurrency=2)
        time.sleep(5)
        began = time.time()
        update = Background("playbooks/update_model.yml", inventory_name, dict(revision("r2"), serving_watch_seconds=60))
        deadline = time.time() + 240
        while time.time() < deadline and state(host).get("active") != "green":
            assert update.running(), update.output()[-4000:]
            time.sleep(0.5)
        assert state(host)["active"] == "green", "the update did not switch within 240 s"
        switched = time.time()
        time.sleep(2)
        crashed = time.time()
        assert host.run("pkill -KILL -f '[l]lama-server.*--port 8002'").rc == 0
        code, out = update.wait(timeout=300)
        ended = time.time()
        load.stop(after=10)
        result = load.wait()
    finally:
        host.run("rm -rf %s && systemctl daemon-reload && systemctl reset-failed %s" % (dropin, UNITS["green"]))
    assert code != 0, out[-4000:]
    assert "failed after the switch" in out and "Switched back automatically" in out, out[-4000:]
    records = result["records"]
    back = [r["start"] for r in records if r["start"] > crashed and r["status"] == 200
            and r.get("instance") == "demo-blue"]
    assert back, load_generator.summarize(records, crashed, None)
    FIGURES["crash_after_switch_automatic_rollback"] = {
        "update_playbook_s": round(ended - began, 1),
        "switch_to_crash_s": round(crashed - switched, 1),
        "crash_to_first_answer_from_old_s": round(min(back) - crashed, 1),
        "load": load_generator.summarize(records),
        "between_crash_and_recovery": load_generator.summarize(records, crashed, min(back)),
        "after_recovery": load_generator.summarize(records, min(back), None),
    }
    print(json.dumps(FIGURES["crash_after_switch_automatic_rollback"], indent=1))
    assert FIGURES["crash_after_switch_automatic_rollback"]["crash_to_first_answer_from_old_s"] <= 30
    assert FIGURES["crash_after_switch_automatic_rollback"]["after_recovery"]["failed"] == 0
    assert_serving(host, "blue", "r1")
    recorded = state(host)
    assert recorded["previous"] == "green" and recorded["rolled_back"]["from"] == "green"
    assert current(host) == "revisions/r1"


def test_rollback_playbook_switches_to_the_previous_instance(host, run_playbook, inventory_name):
    # After the automatic rollback, the previous instance is green on r2 (stopped): rollback.yml
    # starts it again, gates it and switches to it.
    began = time.time()
    rc, out = run_playbook("playbooks/rollback.yml", inventory_name)
    FIGURES["rollback_playbook_s"] = round(time.time() - began, 1)
    assert rc == 0, out[-4000:]
    assert_serving(host, "green", "r2")
    recorded = state(host)
    assert recorded["previous"] == "blue"
    assert current(host) == "revisions/r2"


def test_rollback_with_nothing_to_go_back_to_is_refused(host, run_playbook, inventory_name):
    # After the rollback above, the previous instance is blue on r1: a second rollback goes there.
    # A state without a previous instance is refused with the reason.
    saved = host.file(STATE).content_string
    broken = dict(json.loads(saved), previous=None)
    host.run("printf '%%s' '%s' > %s" % (json.dumps(broken), STATE))
    try:
        rc, out = run_playbook("playbooks/rollback.yml", inventory_name)
    finally:
        host.run("printf '%%s' '%s' > %s" % (saved, STATE))
    assert rc != 0
    assert "nothing to roll back to" in out, out[-3000:]
    assert_serving(host, "green", "r2")


def test_update_killed_mid_run_then_run_again(host, run_playbook, inventory_name):
    update = Background("playbooks/update_model.yml", inventory_name, revision("r1"))
    deadline = time.time() + 300
    while time.time() < deadline and not host.service(UNITS["blue"]).is_running:
        assert update.running(), "the update ended before it could be interrupted"
        time.sleep(0.5)
    assert host.service(UNITS["blue"]).is_running
    time.sleep(2)
    update.kill()
    # Interrupted before the switch: green still serves, on r2.
    assert state(host)["active"] == "green"
    assert ask(host) == ("200", "demo-green")
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, revision("r1"))
    assert rc == 0, out[-4000:]
    assert_serving(host, "blue", "r1")
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name, revision("r1"))
    assert rc == 0 and changed_count(out) == 0, out[-4000:]


def test_update_in_place_stops_first_and_states_the_downtime(host, run_playbook, inventory_name):
    # serving_update_strategy: in_place stops the running instance before the new one starts
    # (for hosts where two instances do not fit): requests fail until the new one is ready.
    load = Load(inventory_name, requests=240, duration=120)
    time.sleep(3)
    began = time.time()
    rc, out = run_playbook("playbooks/update_model.yml", inventory_name,
                           dict(revision("r2"), serving_update_strategy="in_place"))
    ended = time.time()
    load.stop(after=3)
    result = load.wait()
    assert rc == 0, out[-4000:]
    assert "in place: %s stops first" % MODEL in out, out[-4000:]
    total = load_generator.summarize(result["records"])
    FIGURES["in_place_update"] = {"update_playbook_s": round(ended - began, 1), "total": total}
    print(json.dumps(FIGURES["in_place_update"], indent=1))
    assert total["sent"] > 0
    assert_serving(host, "green", "r2")
    assert state(host)["previous"] == "blue"
    assert current(host) == "revisions/r2"


def test_diagnostics_archive_without_secrets(host, run_playbook, inventory_name, tmp_path):
    planted = "planted-token-9f8e7d6c5b4a39281706"
    host.run("echo 'upstream said: Authorization: Bearer %s' >> /var/log/nginx/gpu-stack-demo-error.log" % planted)
    rc, out = run_playbook("playbooks/diagnostics.yml", inventory_name, {"diagnostics_dest": str(tmp_path)})
    assert rc == 0, out[-4000:]
    archives = list(tmp_path.glob("gpu-stack-diagnostics-*.tar.gz"))
    assert len(archives) == 1, list(tmp_path.iterdir())
    with tarfile.open(archives[0]) as tar:
        names = tar.getnames()
        contents = {name: tar.extractfile(name).read().decode("utf-8", "replace")
                    for name in names if tar.getmember(name).isfile()}
    for part in ("gpu_facts.json", "versions.txt", "packages.txt", "serving-state.json", "models.txt",
                 "units.txt", "engine-logs.txt", "gateway-errors.txt", "gateway-config.txt"):
        assert any(name.endswith("/" + part) for name in names), (part, names)
    everything = "\n".join(contents.values())
    assert KEY not in everything and planted not in everything
    assert "Bearer [REDACTED]" in everything
    assert '"active": "green"' in everything
    assert "verified" in everything
    assert "gpu-stack-serving-demo-green.service" in everything


@pytest.fixture(scope="module", autouse=True)
def write_figures():
    yield
    if not FIGURES:
        return
    FIGURES["command"] = "make molecule SCENARIOS=serving_update PLATFORM=debian12"
    FIGURES["host"] = "Debian 12 stand-in (podman), llama.cpp engine on 2 CPU threads, SmolLM2-135M Q4_1"
    FIGURES["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(FIGURES, handle, indent=1)
        handle.write("\n")
