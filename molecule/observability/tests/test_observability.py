"""The observability role on a stand-in host serving the demo model: exporters scraped over
HTTP, Prometheus scraping every target, the engine alert firing when the engine stops,
promtool on the rendered rules, log rotation and the DCGM path in check mode."""
import json
import shlex
import time

import pytest

KEY = "molecule-test-key-0123456789abcdef"
ENGINE_UNIT = "gpu-stack-serving-demo-blue.service"
JOURNAL_UNITS = ("prometheus-node-exporter.service", "prometheus-nginx-exporter.service", "prometheus.service",
                 "gpu-stack-nvml-textfile.service", "gpu-stack-serving-textfile.service", ENGINE_UNIT)
NODE = "http://127.0.0.1:9100/metrics"
NGINX = "http://127.0.0.1:9113/metrics"
PROMETHEUS = "http://127.0.0.1:9090"
RULES = "/etc/prometheus/rules/gpu_stack.rules.yml"
PINNED = "nvcr.io/nvidia/k8s/dcgm-exporter@sha256:" + "0123456789abcdef" * 4


def get(host, url):
    result = host.run("curl -sS --max-time 10 %s" % shlex.quote(url))
    assert result.rc == 0, result.stderr
    return result.stdout


def samples(text):
    """{'name{labels}': value} of a text exposition (label order as exported)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def api(host, path):
    body = json.loads(get(host, PROMETHEUS + path))
    assert body["status"] == "success", body
    return body["data"]


def wait_for(check, timeout, what, interval=2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("%s not within %d s (last: %r)" % (what, timeout, last))


def engine_ready(host):
    return host.run("curl -sf -o /dev/null --max-time 5 http://127.0.0.1:8001/v1/models").rc == 0


# -- exporters -------------------------------------------------------------------------------

def test_node_exporter_serves_host_and_textfile_metrics(host):
    metrics = samples(get(host, NODE))
    assert metrics["node_textfile_scrape_error"] == 0
    # The unit's type label differs: simple for a generated unit (Debian 12), notify for Quadlet.
    prefix = 'node_systemd_unit_state{name="%s",state="active",type=' % ENGINE_UNIT
    active = [value for key, value in metrics.items() if key.startswith(prefix)]
    assert active == [1], [key for key in metrics if ENGINE_UNIT in key]
    assert any(k.startswith("node_filesystem_avail_bytes{") for k in metrics)
    assert any(k.startswith("node_cpu_seconds_total{") for k in metrics)


def test_gpu_collector_reports_no_gpu_with_the_reason(host):
    metrics = samples(get(host, NODE))
    assert metrics['gpu_stack_gpu_collector_up{reason="no_nvidia_device"}'] == 0
    assert metrics["gpu_stack_gpu_count"] == 0
    assert metrics["gpu_stack_gpu_pci_count"] == 0
    assert "gpu_stack_gpu_xid_log_readable" in metrics


def test_gpu_collector_file_is_rewritten_by_its_timer(host):
    path = "/var/lib/prometheus/node-exporter/gpu_stack_gpu.prom"
    first = host.file(path).mtime
    wait_for(lambda: host.file(path).mtime > first, 30, "a new GPU metrics file")
    assert host.file(path).mode == 0o644
    leftovers = host.run("find /var/lib/prometheus/node-exporter -name '.*' -type f").stdout.strip()
    assert leftovers == ""
    assert host.service("gpu-stack-nvml-textfile.timer").is_enabled


def test_textfile_directory_is_group_writable_for_the_collection(host):
    directory = host.file("/var/lib/prometheus/node-exporter")
    assert directory.group == "llmserve"
    assert directory.mode == 0o2775


def test_engine_readiness_and_gateway_responses(host):
    metrics = samples(get(host, NODE))
    assert metrics['gpu_stack_engine_ready{engine="llama_cpp",engine_instance="demo-blue"}'] == 1
    before = metrics.get('gpu_stack_gateway_responses_total{code_class="4xx",gateway="demo"}', 0)
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/v1/models").stdout == "401"
    key = "gpu_stack_gateway_responses_total{code_class=\"4xx\",gateway=\"demo\"}"
    wait_for(lambda: samples(get(host, NODE)).get(key, 0) >= before + 1, 30, "the 401 counted")
    ok = host.run("curl -s -o /dev/null -w '%%{http_code}' -H 'Authorization: Bearer %s' http://127.0.0.1:8080/v1/models" % KEY)
    assert ok.stdout == "200"
    key_2xx = "gpu_stack_gateway_responses_total{code_class=\"2xx\",gateway=\"demo\"}"
    wait_for(lambda: samples(get(host, NODE)).get(key_2xx, 0) >= 1, 30, "the 200 counted")


def test_nginx_exporter_reads_the_status_server(host):
    metrics = samples(get(host, NGINX))
    assert metrics["nginx_up"] == 1
    assert metrics["nginx_connections_accepted"] >= 1


def test_status_server_is_separate_from_the_gateway(host):
    assert "stub_status" in host.file("/etc/nginx/conf.d/gpu-stack-status.conf").content_string
    assert "stub_status" not in host.run("cat /etc/nginx/conf.d/gpu-stack-demo.conf").stdout
    # The gateway does not serve the status page.
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/stub_status").stdout != "200"


def test_exporters_listen_on_loopback_only(host):
    listeners = host.run("ss -Hltn").stdout.split()
    for port in (9100, 9113, 9090, 8079):
        assert "127.0.0.1:%d" % port in listeners, port
        for wildcard in ("0.0.0.0:%d", "*:%d", "[::]:%d"):
            assert wildcard % port not in listeners, (wildcard, port)


def test_llama_cpp_engine_serves_metrics(host):
    """llama-server runs with --metrics: its Prometheus metrics are on the engine's own port."""
    out = host.run("curl -sf http://127.0.0.1:8001/metrics")
    assert out.rc == 0, out.stderr
    assert "llamacpp:prompt_tokens_total" in out.stdout


# -- Prometheus ------------------------------------------------------------------------------

def test_prometheus_scrapes_every_target(host):
    # The engine is scraped on both colours' ports: blue (8001) serves, green (8002) is idle and
    # stopped until an update starts it, so its target is down by design (the exporter-down alert
    # leaves the engine job out; GpuStackEngineNotReady follows the serving colour).
    def all_up():
        targets = api(host, "/api/v1/targets")["activeTargets"]
        health = sorted((t["labels"]["job"], t["scrapeUrl"].split("/")[2], t["health"]) for t in targets)
        serving = [h for h in health if h[:2] != ("engine", "127.0.0.1:8002")]
        return health if serving and all(h[2] == "up" for h in serving) else None
    health = wait_for(all_up, 60, "every target of a serving instance up")
    assert [h[0] for h in health] == ["engine", "engine", "nginx", "node", "prometheus"], health
    assert ("engine", "127.0.0.1:8001", "up") in health and ("engine", "127.0.0.1:8002", "down") in health, health
    # Only this role's targets carry the host label (the package's own configuration, replaced at
    # install, leaves series of its targets for a few minutes after Prometheus restarts).
    result = api(host, "/api/v1/query?query=up%7Bhost%21%3D%22%22%7D")["result"]
    assert sorted(r["metric"]["job"] for r in result) == ["engine", "engine", "nginx", "node", "prometheus"]
    assert sorted(r["value"][1] for r in result if r["metric"]["job"] == "engine") == ["0", "1"], result
    assert all(r["value"][1] == "1" for r in result if r["metric"]["job"] != "engine"), result


def test_prometheus_has_the_textfile_metrics(host):
    def found():
        return api(host, "/api/v1/query?query=gpu_stack_gpu_collector_up")["result"]
    result = wait_for(found, 30, "gpu_stack_gpu_collector_up in Prometheus")
    assert result[0]["metric"]["reason"] == "no_nvidia_device"


def test_rules_are_loaded(host):
    groups = api(host, "/api/v1/rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    for alert in ("GpuStackGpuTemperatureHigh", "GpuStackGpuXidError", "GpuStackGpuFellOffTheBus",
                  "GpuStackEngineNotReady", "GpuStackGateway5xxRate", "GpuStackModelStorageNearlyFull",
                  "GpuStackGpuTuningDrift"):
        assert alert in names, alert


def firing(host, name):
    alerts = api(host, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_engine_alert_fires_when_the_engine_stops(host):
    assert not firing(host, "GpuStackEngineNotReady")
    stopped = time.time()
    assert host.run("systemctl stop %s" % ENGINE_UNIT).rc == 0
    try:
        alerts = wait_for(lambda: firing(host, "GpuStackEngineNotReady"), 90, "GpuStackEngineNotReady firing")
        print("engine alert fired after %.1f s" % (time.time() - stopped))
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        assert host.run("systemctl start %s" % ENGINE_UNIT).rc == 0
    wait_for(lambda: engine_ready(host), 180, "engine ready again")
    wait_for(lambda: not firing(host, "GpuStackEngineNotReady"), 90, "the alert resolved")


# -- promtool --------------------------------------------------------------------------------

def test_promtool_accepts_the_installed_rules(host):
    result = host.run("promtool check rules %s" % RULES)
    assert result.rc == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(host):
    broken = host.run("sed 's/expr: gpu_stack_gpu_tuning_drift == 1/expr: gpu_stack_gpu_tuning_drift ==/' %s"
                      " > /tmp/broken.rules.yml && grep -c 'gpu_stack_gpu_tuning_drift ==$' /tmp/broken.rules.yml" % RULES)
    assert broken.stdout.strip() == "1", broken.stdout
    result = host.run("promtool check rules /tmp/broken.rules.yml")
    assert result.rc != 0
    assert "parse error" in (result.stdout + result.stderr)


RULE_TESTS = """
rule_files: [%s]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'gpu_stack_gpu_temperature_celsius{host="h",gpu="0"}'
        values: '90x10'
      - series: 'gpu_stack_gpu_temperature_celsius{host="h",gpu="1"}'
        values: '60x10'
      - series: 'gpu_stack_gpu_xid_errors_total{host="h",gpu="0",xid="79"}'
        values: '0 0 1 1 1'
      - series: 'gpu_stack_gpu_tuning_drift{host="h",gpu="0",setting="application_clocks"}'
        values: '1x10'
      - series: 'gpu_stack_gateway_responses_total{host="h",gateway="demo",code_class="2xx"}'
        values: '0+10x10'
      - series: 'gpu_stack_gateway_responses_total{host="h",gateway="demo",code_class="5xx"}'
        values: '0+5x10'
      # After an update green serves and blue is stopped: not an alert. Both stopped: an alert.
      - series: 'node_systemd_unit_state{host="h",name="gpu-stack-serving-demo-blue.service",state="active"}'
        values: '0x10'
      - series: 'node_systemd_unit_state{host="h",name="gpu-stack-serving-demo-green.service",state="active"}'
        values: '1x10'
      - series: 'node_systemd_unit_state{host="h",name="gpu-stack-serving-other-blue.service",state="active"}'
        values: '0x10'
      - series: 'node_systemd_unit_state{host="h",name="gpu-stack-serving-other-green.service",state="active"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: GpuStackEngineNotReady
        exp_alerts:
          - exp_labels: {severity: critical, host: h, serving: other}
            exp_annotations:
              summary: "Inference engine on h is not ready (other)"
              description: "The engine's unit is not active or /v1/models does not answer; 'journalctl -u gpu-stack-serving-*' shows why."
      - eval_time: 7m
        alertname: GpuStackGpuTemperatureHigh
        exp_alerts:
          - exp_labels: {severity: warning, host: h, gpu: "0"}
            exp_annotations:
              summary: "GPU 0 on h at 90 C"
              description: "Over 85 C the GPU throttles its clocks; check cooling and airflow."
      - eval_time: 3m
        alertname: GpuStackGpuXidError
        exp_alerts:
          - exp_labels: {severity: critical, host: h, gpu: "0", xid: "79"}
            exp_annotations:
              summary: "Xid 79 on GPU 0 of h"
              description: "The NVIDIA driver logged an Xid error; 'journalctl -k | grep Xid' shows it."
      - eval_time: 1m
        alertname: GpuStackGpuXidError
        exp_alerts: []
      - eval_time: 3m
        alertname: GpuStackGpuFellOffTheBus
        exp_alerts:
          - exp_labels: {severity: critical, host: h, gpu: "0", xid: "79"}
            exp_annotations:
              summary: "A GPU of h is lost (fell off the bus)"
              description: "NVML cannot reach a GPU that is on the PCI bus (Xid 79); reset it or reboot, then check power and seating."
      - eval_time: 7m
        alertname: GpuStackGpuTuningDrift
        exp_alerts:
          - exp_labels: {severity: warning, host: h, gpu: "0", setting: application_clocks}
            exp_annotations:
              summary: "GPU 0 of h: application_clocks differs from the tuned value"
              description: "Clocks, power limit or persistence reset (driver reload, reboot without the boot unit);
                run the gpu_tuning role or start gpu-stack-tuning.service."
      - eval_time: 10m
        alertname: GpuStackGateway5xxRate
        exp_alerts:
          - exp_labels: {severity: warning, host: h, gateway: demo}
            exp_annotations:
              summary: "Gateway demo on h: 33.33%% of responses are 5xx"
              description: "The engine behind the gateway fails or times out; check the engine's journal and the gateway's error log."
"""


def test_alert_rules_fire_on_synthetic_gpu_and_gateway_series(host):
    """The GPU alerts cannot fire on a host without GPU: promtool's rule tests feed them series."""
    host.run("cat > /tmp/gpu_stack_rules_test.yml <<'EOF'\n%sEOF" % (RULE_TESTS % RULES))
    result = host.run("promtool test rules /tmp/gpu_stack_rules_test.yml")
    assert result.rc == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# -- logs ------------------------------------------------------------------------------------

def test_logrotate_covers_the_gateway_logs_without_errors(host):
    result = host.run("logrotate --debug /etc/logrotate.conf")
    assert result.rc == 0, result.stderr
    assert "error:" not in result.stderr
    assert "rotating pattern: /var/log/nginx/gpu-stack-*.log" in result.stderr
    assert "considering log /var/log/nginx/gpu-stack-demo-access.log" in result.stderr
    # The distribution's nginx entry still rotates the other nginx logs.
    assert "considering log /var/log/nginx/access.log" in result.stderr


# -- DCGM exporter, check mode only ----------------------------------------------------------

def test_dcgm_exporter_in_check_mode_renders_and_changes_nothing(host, inventory_name, run_playbook):
    rc, out = run_playbook("molecule/observability/dcgm_check.yml", inventory_name, check=True,
                           extra_vars={"observability_dcgm_exporter": True, "observability_dcgm_exporter_image": PINNED})
    assert rc == 0, out[-3000:]
    assert "Render the DCGM exporter unit" in out
    assert "--device nvidia.com/gpu=all" in out
    assert PINNED in out
    assert "DCGM_FI_DEV_XID_ERRORS" in out
    assert not host.file("/etc/systemd/system/gpu-stack-dcgm-exporter.service").exists
    assert not host.file("/etc/gpu_stack/dcgm-exporter-counters.csv").exists


@pytest.mark.parametrize("image", ["nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04", ""])
def test_dcgm_exporter_refuses_an_unpinned_image(inventory_name, run_playbook, image):
    rc, out = run_playbook("molecule/observability/dcgm_check.yml", inventory_name, check=True,
                           extra_vars={"observability_dcgm_exporter": True, "observability_dcgm_exporter_image": image})
    assert rc != 0
    assert "not pinned by digest" in out
    assert "observability_dcgm_exporter_image" in out


def test_listening_on_the_any_address_is_refused(inventory_name, run_playbook):
    rc, out = run_playbook("molecule/observability/dcgm_check.yml", inventory_name, check=True,
                           extra_vars={"observability_listen_address": "0.0.0.0"})
    assert rc != 0
    assert "observability_listen_address is '0.0.0.0'" in out
