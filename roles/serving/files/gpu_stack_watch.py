# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""python3 gpu_stack_watch.py PORT INSTANCE SECONDS ACCESS_LOG MAX_ERROR_RATE MIN_REQUESTS FAILURES

Installed by the llmops.gpu_stack.serving role; run by an update right after its switch.

After a switch the gateway sends every request to INSTANCE (engine on 127.0.0.1:PORT). For
SECONDS this watches it once a second: its /v1/models must answer within 5 s, and of the
gateway's answers from it (ACCESS_LOG lines written since the watch began), at most
MAX_ERROR_RATE may be 5xx once there are MIN_REQUESTS. FAILURES failed probes in a row, or the
error rate, end the watch at once: one JSON line with the figures and the reason, exit 1. A
watch that saw nothing wrong prints its figures and exits 0. Exit 2: bad arguments.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request


def probe(port, timeout=5):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/models" % port, timeout=timeout) as answer:
            return answer.status == 200, "HTTP %d" % answer.status
    except urllib.error.HTTPError as exc:
        return False, "HTTP %d" % exc.code
    except (OSError, ValueError) as exc:
        return False, type(exc).__name__


class LogTail(object):
    """The complete lines appended to a file since it was opened."""

    def __init__(self, path):
        self.handle = open(path, "rb") if os.path.exists(path) else None
        if self.handle:
            self.handle.seek(0, os.SEEK_END)
        self.rest = b""

    def lines(self):
        if not self.handle:
            return []
        data = self.rest + self.handle.read()
        *complete, self.rest = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]


def main(argv, interval=1.0):
    try:
        port, instance, seconds, log = int(argv[0]), argv[1], float(argv[2]), argv[3]
        max_rate, min_requests, failures_allowed = float(argv[4]), int(argv[5]), int(argv[6])
    except (IndexError, ValueError):
        sys.stderr.write(__doc__)
        return 2
    began = time.time()
    figures = {"instance": instance, "probes": 0, "failed_probes": 0, "requests": 0, "errors": 0}
    tail = LogTail(log)
    in_a_row = 0
    reason = None
    while time.time() - began < seconds:
        ok, detail = probe(port)
        figures["probes"] += 1
        if ok:
            in_a_row = 0
        else:
            in_a_row += 1
            figures["failed_probes"] += 1
            if in_a_row >= failures_allowed:
                reason = "/v1/models failed %d times in a row (%s)" % (in_a_row, detail)
        for line in tail.lines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("instance") != instance:
                continue
            figures["requests"] += 1
            if int(entry.get("status") or 0) >= 500:
                figures["errors"] += 1
        judged = figures["requests"] >= min_requests
        if reason is None and judged and figures["errors"] > max_rate * figures["requests"]:
            reason = "%d of %d answers from %s were server errors (more than %g)" % (
                figures["errors"], figures["requests"], instance, max_rate)
        if reason:
            break
        time.sleep(interval)
    figures["seconds"] = round(time.time() - began, 1)
    figures["healthy"] = reason is None
    figures["reason"] = reason
    print(json.dumps(figures))
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
