# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write serving metrics for node exporter's textfile collector: engine readiness and the
gateway's responses by status class.

Readiness: the engine's /v1/models answers 200 and lists a model (the serving role's own
readiness test without the one-token completion, which would queue behind real requests on
a single-slot engine). Gateway responses: the serving role's JSON access log is read from
where the last run stopped (offset and inode in a state file; a rotated log is read from
its start), and the counts by status class (2xx, 4xx, 5xx ...) carry over between runs, so
they are Prometheus counters.

The observability role renders the settings file and runs this script from a systemd timer.
Exit status: 0 the file was written; 2 the settings or the output could not be used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_CONFIG = "/etc/gpu_stack/observability_serving.json"
# At most this much of a log is read per run; the rest waits for the next run.
MAX_READ = 32 * 1024 * 1024


def load_config(path):
    """{engines: [{instance, engine, port[, port_green, serving_state]}], gateways: [{name, access_log}],
    state_file, output}."""
    with open(path, "r") as handle:
        config = json.load(handle)
    problems = []
    for key in ("engines", "gateways"):
        if not isinstance(config.get(key), list):
            problems.append("%s is not a list" % key)
    for key in ("state_file", "output"):
        if not isinstance(config.get(key), str) or not config.get(key):
            problems.append("%s is not a path" % key)
    if problems:
        raise ValueError("; ".join(problems))
    return config


def probe_engine(port, timeout=5.0, opener=urllib.request.urlopen, clock=time.monotonic):
    """(ready 0/1, seconds taken): /v1/models answers 200 with at least one model."""
    start = clock()
    try:
        with opener("http://127.0.0.1:%d/v1/models" % int(port), timeout=timeout) as answer:
            body = json.loads(answer.read().decode("utf-8"))
            ready = int(answer.status == 200 and bool(body.get("data")))
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        ready = 0
    return ready, round(clock() - start, 6)


def status_class(line):
    """'2xx' ... '5xx' for one access log line, 'invalid' for a line that is not the JSON format."""
    try:
        status = int(json.loads(line)["status"])
    except (ValueError, KeyError, TypeError):
        return "invalid"
    if not 100 <= status <= 599:
        return "invalid"
    return "%dxx" % (status // 100)


def read_new_lines(path, entry, max_read=MAX_READ):
    """(complete new lines, updated entry) for a log; entry is {inode, offset, counts}.

    A changed inode or a file shorter than the offset means the log was rotated: it is read
    from its start (lines written to the old file after the last run are not counted).
    """
    entry = dict(entry or {})
    entry.setdefault("counts", {})
    try:
        info = os.stat(path)
    except OSError:
        return [], entry
    offset = entry.get("offset", 0)
    if entry.get("inode") != info.st_ino or info.st_size < offset:
        offset = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(max_read)
    end = data.rfind(b"\n")
    if end < 0:
        lines, consumed = [], 0
    else:
        lines = data[:end].decode("utf-8", "replace").split("\n")
        consumed = end + 1
    entry["inode"] = info.st_ino
    entry["offset"] = offset + consumed
    return lines, entry


def count_responses(lines, counts):
    counts = dict(counts)
    for line in lines:
        if line.strip():
            key = status_class(line)
            counts[key] = counts.get(key, 0) + 1
    return counts


def render(engines, gateways):
    """engines: [(instance, engine, ready, seconds)]; gateways: [(name, counts)]."""
    out = []
    if engines:
        out += ["# HELP gpu_stack_engine_ready 1 when the engine lists its model on /v1/models",
                "# TYPE gpu_stack_engine_ready gauge"]
        out += ['gpu_stack_engine_ready{engine="%s",engine_instance="%s"} %d' % (e, i, r) for i, e, r, _s in engines]
        out += ["# HELP gpu_stack_engine_probe_seconds Time the readiness probe took",
                "# TYPE gpu_stack_engine_probe_seconds gauge"]
        out += ['gpu_stack_engine_probe_seconds{engine="%s",engine_instance="%s"} %s' % (e, i, s) for i, e, _r, s in engines]
    if gateways:
        out += ["# HELP gpu_stack_gateway_responses_total Gateway responses by status class (from its access log)",
                "# TYPE gpu_stack_gateway_responses_total counter"]
        for name, counts in gateways:
            # Every class is written, 0 included, so rate() has a series before the first error.
            for key in sorted(set(counts) | {"2xx", "4xx", "5xx"}):
                out.append('gpu_stack_gateway_responses_total{code_class="%s",gateway="%s"} %d'
                           % (key, name, counts.get(key, 0)))
    return "\n".join(out) + "\n"


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def active_instance(engine):
    """(instance label, port) of the colour that serves now. A blue/green deployment records its
    active colour in the serving role's state file (serving_state); after an update that is green,
    on port_green. Without a readable state, the engine's own instance and port."""
    state_path = engine.get("serving_state")
    if state_path and engine.get("port_green"):
        try:
            with open(state_path, "r") as handle:
                active = json.load(handle).get("active")
        except (IOError, OSError, ValueError, AttributeError):
            active = None
        if active in ("blue", "green"):
            base = engine["instance"].rsplit("-", 1)[0] if engine["instance"].endswith(("-blue", "-green")) \
                else engine["instance"]
            return "%s-%s" % (base, active), int(engine["port_green"] if active == "green" else engine["port"])
    return engine["instance"], int(engine["port"])


def run(config, opener=urllib.request.urlopen):
    """Probe, count and write; returns the rendered text."""
    try:
        with open(config["state_file"], "r") as handle:
            state = json.load(handle)
    except (IOError, OSError, ValueError):
        state = {}
    engines = []
    for engine in config["engines"]:
        instance, port = active_instance(engine)
        ready, seconds = probe_engine(port, opener=opener)
        engines.append((instance, engine["engine"], ready, seconds))
    gateways = []
    new_state = {}
    for gateway in config["gateways"]:
        lines, entry = read_new_lines(gateway["access_log"], state.get(gateway["access_log"]))
        entry["counts"] = count_responses(lines, entry["counts"])
        new_state[gateway["access_log"]] = entry
        gateways.append((gateway["name"], entry["counts"]))
    text = render(engines, gateways)
    write_atomically(config["output"], text)
    write_atomically(config["state_file"], json.dumps(new_state, sort_keys=True) + "\n")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write serving metrics for node exporter's textfile collector.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="settings file (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (IOError, OSError, ValueError) as exc:
        print("gpu-stack-serving-textfile: unusable settings %s: %s. Fix: run the llmops.gpu_stack.observability "
              "role again, which renders them." % (args.config, exc), file=sys.stderr)
        return 2
    try:
        run(config)
    except (IOError, OSError) as exc:
        print("gpu-stack-serving-textfile: cannot write: %s. Fix: create the textfile directory (the observability "
              "role does) and run as root." % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
