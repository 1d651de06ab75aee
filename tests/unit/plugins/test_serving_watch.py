# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The serving role's watch of a new instance after a switch (roles/serving/files/gpu_stack_watch.py),
against a throwaway engine stand-in on 127.0.0.1 and a JSON access log written by the test."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import threading

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
SPEC = importlib.util.spec_from_file_location(
    "gpu_stack_watch", os.path.join(ROOT, "roles", "serving", "files", "gpu_stack_watch.py"))
watch = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(watch)


class _Engine(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):  # pylint: disable=arguments-differ
        return


@pytest.fixture
def engine():
    handler = type("Handler", (_Engine,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def run(capsys, *args, interval=0.05):
    code = watch.main([str(a) for a in args], interval=interval)
    return code, json.loads(capsys.readouterr().out)


def log_line(instance, status):
    return json.dumps({"instance": instance, "status": status}) + "\n"


def test_a_healthy_instance_passes_the_watch(engine, tmp_path, capsys):
    port, _handler = engine
    log = tmp_path / "access.log"
    log.write_text(log_line("demo-green", 500) * 5)   # written before the watch: not counted
    code, figures = run(capsys, port, "demo-green", 0.5, log, 0.05, 10, 2)
    assert code == 0 and figures["healthy"] is True and figures["reason"] is None
    assert figures["probes"] >= 2 and figures["failed_probes"] == 0 and figures["errors"] == 0


def test_an_instance_that_stops_answering_ends_the_watch_at_once(engine, tmp_path, capsys):
    port, handler = engine
    handler.status = 503
    code, figures = run(capsys, port, "demo-green", 30, tmp_path / "none.log", 0.05, 10, 2)
    assert code == 1 and figures["healthy"] is False
    assert figures["reason"] == "/v1/models failed 2 times in a row (HTTP 503)"
    assert figures["seconds"] < 5


def test_a_dead_port_ends_the_watch(tmp_path, capsys):
    code, figures = run(capsys, 1, "demo-green", 30, tmp_path / "none.log", 0.05, 10, 3)
    assert code == 1 and figures["reason"].startswith("/v1/models failed 3 times in a row")


def test_server_errors_through_the_gateway_end_the_watch(engine, tmp_path, capsys):
    port, _handler = engine
    log = tmp_path / "access.log"
    log.write_text("")

    def write_later():
        with open(str(log), "a", encoding="utf-8") as handle:
            # Another instance's errors do not count; the new instance's do.
            handle.write(log_line("demo-blue", 502) * 20)
            handle.write(log_line("demo-green", 200) * 8 + log_line("demo-green", 502) * 4)

    timer = threading.Timer(0.1, write_later)
    timer.start()
    code, figures = run(capsys, port, "demo-green", 30, log, 0.05, 10, 2)
    timer.join()
    assert code == 1 and (figures["requests"], figures["errors"]) == (12, 4)
    assert figures["reason"] == "4 of 12 answers from demo-green were server errors (more than 0.05)"


def test_too_few_answers_are_not_judged(engine, tmp_path, capsys):
    port, _handler = engine
    log = tmp_path / "access.log"
    log.write_text("")
    timer = threading.Timer(0.1, lambda: log.write_text(log_line("demo-green", 502) * 3))
    timer.start()
    code, figures = run(capsys, port, "demo-green", 0.5, log, 0.05, 10, 2)
    timer.join()
    assert code == 0 and figures["errors"] == 3 and figures["requests"] == 3


def test_bad_arguments(capsys):
    assert watch.main(["not-a-port"]) == 2
    assert "gpu_stack_watch.py PORT" in capsys.readouterr().err
