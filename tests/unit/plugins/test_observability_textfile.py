# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The observability role's two textfile collector scripts: the NVML one run as the host runs
it (module_utils copied beside it, fake NVML at the pynvml boundary) and the serving one
(engine readiness, gateway responses from the JSON access log)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

import fake_pynvml as fake

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
FILES = os.path.join(ROOT, "roles", "observability", "files")
MODULE_UTILS = os.path.join(ROOT, "plugins", "module_utils")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FILES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nvml_script = load("gpu_stack_nvml_textfile")
serving = load("gpu_stack_serving_textfile")


# -- NVML collector script ---------------------------------------------------------------

def install(tmp_path):
    """The layout the roles install: the script in lib/observability, the host's one copy of the
    module_utils (with their loader) in lib/module_utils. Returns the module_utils directory."""
    lib = tmp_path / "lib" / "module_utils"
    lib.mkdir(parents=True)
    (tmp_path / "lib" / "observability").mkdir()
    shutil.copy(os.path.join(FILES, "gpu_stack_nvml_textfile.py"), str(tmp_path / "lib" / "observability"))
    for name in ("_gpu_tables.py", "_nvml.py", "_fsutil.py", "_nvml_metrics.py", "_standalone.py"):
        shutil.copy(os.path.join(MODULE_UTILS, name), str(lib))
    return lib


def test_installed_script_on_a_host_without_gpu_writes_collector_down(tmp_path):
    """Runs the installed copy in a fresh interpreter, as the systemd unit does."""
    lib = install(tmp_path)
    out = tmp_path / "textfile"
    out.mkdir()
    sysfs = fake.empty_sysfs(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(lib.parent / "observability" / "gpu_stack_nvml_textfile.py"), "--output", str(out / "gpu.prom"),
         "--bindings-path", str(tmp_path / "none"), "--tuning-config", str(tmp_path / "none.json"),
         "--kernel-log", str(tmp_path / "no-kmsg"), "--sysfs-root", sysfs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    text = (out / "gpu.prom").read_text()
    assert 'gpu_stack_gpu_collector_up{reason="no_nvidia_device"} 0' in text
    assert "gpu_stack_gpu_count 0" in text
    assert sorted(os.listdir(str(out))) == ["gpu.prom"]


def test_script_with_fake_nvml_writes_gpu_metrics_and_drift(tmp_path):
    out = tmp_path / "gpu.prom"
    tuning = tmp_path / "gpu_tuning.json"
    tuning.write_text(json.dumps({"format": 1, "persistence": "legacy", "defaults": {}, "models": {}}))
    nvml = fake.hgx_h200(2)
    nvml.gpus[1].persistence = 0
    rc = nvml_script.main(["--output", str(out), "--library", str(install(tmp_path)), "--tuning-config", str(tuning),
                           "--kernel-log", str(tmp_path / "none"), "--sysfs-root", fake.hgx_sysfs(tmp_path)], nvml=nvml)
    assert rc == 0
    text = out.read_text()
    assert 'gpu_stack_gpu_collector_up{reason="ok"} 1' in text
    assert 'gpu_stack_gpu_temperature_celsius{gpu="1",uuid="%s"} 34' % nvml.gpus[1].uuid in text
    assert 'gpu_stack_gpu_tuning_drift{gpu="1",setting="persistence",uuid="%s"} 1' % nvml.gpus[1].uuid in text
    assert 'gpu_stack_gpu_tuning_drift{gpu="0",setting="persistence",uuid="%s"} 0' % nvml.gpus[0].uuid in text


def test_script_fails_when_the_library_is_missing(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(os.path.join(MODULE_UTILS, "_gpu_tables.py"), str(lib))
    rc = nvml_script.main(["--output", str(tmp_path / "x.prom"), "--library", str(lib)])
    assert rc == 2
    assert "_nvml.py is missing" in capsys.readouterr().err
    assert not (tmp_path / "x.prom").exists()


def test_script_fails_when_the_output_directory_is_missing(tmp_path, capsys):
    rc = nvml_script.main(["--output", str(tmp_path / "absent" / "x.prom"), "--library", str(install(tmp_path)),
                           "--sysfs-root", fake.empty_sysfs(tmp_path), "--kernel-log", str(tmp_path / "none")])
    assert rc == 2
    assert "cannot write" in capsys.readouterr().err


def test_unreadable_tuning_file_is_ignored(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    assert nvml_script.read_tuning(str(bad)) is None
    assert nvml_script.read_tuning(str(tmp_path / "absent")) is None


# -- serving collector script ------------------------------------------------------------

class Answer(object):
    def __init__(self, status, body):
        self.status = status
        self._body = body

    def read(self):
        return self._body

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def opener_returning(status, body):
    def opener(url, timeout):
        assert url == "http://127.0.0.1:8001/v1/models"
        return Answer(status, body)
    return opener


def refusing_opener(url, timeout):
    raise serving.urllib.error.URLError("connection refused")


@pytest.mark.parametrize("opener, ready", [
    (opener_returning(200, b'{"object":"list","data":[{"id":"m"}]}'), 1),
    (opener_returning(200, b'{"object":"list","data":[]}'), 0),
    (opener_returning(200, b"not json"), 0),
    (refusing_opener, 0),
])
def test_probe_engine(opener, ready):
    assert serving.probe_engine(8001, opener=opener)[0] == ready


@pytest.mark.parametrize("line, kind", [
    ('{"status":200,"path":"/v1/models"}', "2xx"),
    ('{"status":502}', "5xx"),
    ('{"status":429}', "4xx"),
    ('{"status":"x"}', "invalid"),
    ('{"status":700}', "invalid"),
    ("plain text", "invalid"),
])
def test_status_class(line, kind):
    assert serving.status_class(line) == kind


def log_line(status):
    return json.dumps({"time": "2026-01-01T00:00:00+00:00", "status": status, "path": "/v1/chat/completions"}) + "\n"


def test_access_log_is_read_incrementally_and_across_rotation(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(log_line(200) + log_line(502) + '{"status":2')   # the last line is still being written
    lines, entry = serving.read_new_lines(str(log), None)
    counts = serving.count_responses(lines, entry["counts"])
    assert counts == {"2xx": 1, "5xx": 1}
    with open(str(log), "a") as handle:
        handle.write('00}\n' + log_line(500))
    lines, entry = serving.read_new_lines(str(log), dict(entry, counts=counts))
    counts = serving.count_responses(lines, counts)
    assert counts == {"2xx": 2, "5xx": 2}
    os.rename(str(log), str(tmp_path / "access.log.1"))   # rotated: a new file, counts go on
    log.write_text(log_line(401))
    lines, entry = serving.read_new_lines(str(log), dict(entry, counts=counts))
    assert serving.count_responses(lines, counts) == {"2xx": 2, "4xx": 1, "5xx": 2}


def test_missing_log_reads_nothing(tmp_path):
    lines, entry = serving.read_new_lines(str(tmp_path / "absent.log"), {"offset": 10, "counts": {"2xx": 3}})
    assert lines == [] and entry["counts"] == {"2xx": 3}


def test_run_writes_metrics_and_keeps_counters_between_runs(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(log_line(200) + log_line(503))
    config = {"engines": [{"instance": "demo-blue", "engine": "llama_cpp", "port": 8001}],
              "gateways": [{"name": "demo", "access_log": str(log)}],
              "state_file": str(tmp_path / "state.json"), "output": str(tmp_path / "serving.prom")}
    serving.run(config, opener=refusing_opener)
    with open(str(log), "a") as handle:
        handle.write(log_line(503))
    text = serving.run(config, opener=opener_returning(200, b'{"data":[{"id":"m"}]}'))
    assert text == (tmp_path / "serving.prom").read_text()
    assert 'gpu_stack_engine_ready{engine="llama_cpp",engine_instance="demo-blue"} 1' in text
    assert 'gpu_stack_gateway_responses_total{code_class="5xx",gateway="demo"} 2' in text
    assert 'gpu_stack_gateway_responses_total{code_class="2xx",gateway="demo"} 1' in text
    assert 'gpu_stack_gateway_responses_total{code_class="4xx",gateway="demo"} 0' in text


def test_engine_down_is_ready_zero(tmp_path):
    config = {"engines": [{"instance": "demo-blue", "engine": "vllm", "port": 8001}], "gateways": [],
              "state_file": str(tmp_path / "state.json"), "output": str(tmp_path / "serving.prom")}
    assert 'gpu_stack_engine_ready{engine="vllm",engine_instance="demo-blue"} 0' in serving.run(config, opener=refusing_opener)


@pytest.mark.parametrize("content, error", [
    ({"engines": {}, "gateways": [], "state_file": "/s", "output": "/o"}, "engines is not a list"),
    ({"engines": [], "gateways": [], "state_file": "", "output": "/o"}, "state_file is not a path"),
])
def test_bad_settings_are_refused(tmp_path, content, error, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=error):
        serving.load_config(str(path))
    assert serving.main(["--config", str(path)]) == 2
    assert "unusable settings" in capsys.readouterr().err


def test_serving_script_needs_no_collection_code():
    # The serving script must not need the collection at all (it runs on hosts where only
    # the role's files are installed).
    source = io.open(os.path.join(FILES, "gpu_stack_serving_textfile.py"), encoding="utf-8").read()
    assert "ansible_collections" not in source


def test_the_serving_colour_is_probed_after_an_update(tmp_path):
    state = tmp_path / "demo.json"
    config = {"engines": [{"instance": "demo-blue", "engine": "llama_cpp", "port": 8001, "port_green": 8002,
                           "serving_state": str(state)}],
              "gateways": [], "state_file": str(tmp_path / "state.json"), "output": str(tmp_path / "serving.prom")}
    probed = []

    def opener(url, timeout):
        probed.append(url)
        return Answer(200, b'{"data":[{"id":"m"}]}')

    # No state yet (first deployment in progress): blue, as rendered.
    assert 'engine_instance="demo-blue"} 1' in serving.run(config, opener=opener)
    state.write_text('{"active": "green", "instances": {}}')
    text = serving.run(config, opener=opener)
    assert 'gpu_stack_engine_ready{engine="llama_cpp",engine_instance="demo-green"} 1' in text
    assert "demo-blue" not in text
    assert probed == ["http://127.0.0.1:8001/v1/models", "http://127.0.0.1:8002/v1/models"]
    state.write_text("not json")
    assert 'engine_instance="demo-blue"' in serving.run(config, opener=opener)
