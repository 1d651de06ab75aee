# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded load generator for the gateway: loopback only, a fixed request count spread
evenly over a fixed duration, at most N requests in flight.

Runs on the served host itself (python3 standard library only), so the traffic never leaves
the machine. Each request is a small completion (max_tokens 1 by default) on a connection of
its own, as a client without connection reuse would send it. Every request is recorded (start,
end, HTTP status or the connection error, the instance that answered from the gateway's
X-Gpu-Stack-Instance header); the summary gives sent / failed / p50 / p99 per phase.

    GPU_STACK_API_KEY=... python3 load_generator.py --url http://127.0.0.1:8080 \\
        --model smollm2-135m-instruct --requests 600 --duration 150 --concurrency 4 \\
        --output /tmp/load.json

With --stop-file, the generator stops starting new requests once that file exists (the ones in
flight finish and are recorded): a test ends the load as soon as what it measures is over,
within the same bounds. Without arguments it checks itself against a throwaway server on
127.0.0.1 (a few seconds).
The key comes from the environment (GPU_STACK_API_KEY), never from the command line.
"""
import argparse
import http.client
import http.server
import ipaddress
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

INSTANCE_HEADER = "X-Gpu-Stack-Instance"


def check_loopback(url):
    """Return (host, port, path) of an http URL whose host resolves to loopback only."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("--url must be http://<loopback address>:<port>, got %r" % url)
    infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ValueError("--url must point at this machine's loopback (127.0.0.0/8 or ::1); %s resolves to %s"
                         % (parts.hostname, ", ".join(sorted(addresses))))
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def percentile(values, fraction):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(records, start=None, end=None):
    """sent / failed / latency of the requests that started in [start, end)."""
    chosen = [r for r in records
              if (start is None or r["start"] >= start) and (end is None or r["start"] < end)]
    latencies = [r["end"] - r["start"] for r in chosen if r["status"] == 200]
    instances = {}
    for r in chosen:
        instances[r.get("instance") or "-"] = instances.get(r.get("instance") or "-", 0) + 1
    failed = [r for r in chosen if r["status"] != 200]
    return {
        "sent": len(chosen),
        "failed": len(failed),
        "failures": sorted({"%s %s" % (r["status"], r.get("error", "")) for r in failed})[:10],
        "p50_s": round(percentile(latencies, 0.50), 4) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 4) if latencies else None,
        "max_s": round(max(latencies), 4) if latencies else None,
        "instances": instances,
    }


def switch_window(records, old, new):
    """When traffic moved from instance `old` to `new`: the last request the old one answered and
    the first the new one answered (start times), and how far apart they are (negative: overlap)."""
    last_old = max((r["start"] for r in records if r.get("instance") == old), default=None)
    first_new = min((r["start"] for r in records if r.get("instance") == new), default=None)
    gap = None if last_old is None or first_new is None else round(first_new - last_old, 3)
    return {"last_old_start": last_old, "first_new_start": first_new, "gap_s": gap}


def one_request(host, port, path, body, headers, timeout):
    record = {"start": time.time()}
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        record["status"] = resp.status
        record["instance"] = resp.getheader(INSTANCE_HEADER, "")
    except (OSError, http.client.HTTPException) as exc:
        record["status"] = 0
        record["error"] = type(exc).__name__
    finally:
        conn.close()
    record["end"] = time.time()
    return record


def run(url, key, model, requests, duration, concurrency, max_tokens=1, timeout=120.0, stop_file=None):
    """Send `requests` completions, the i-th not before start + i * duration / requests, with at
    most `concurrency` in flight, none after `stop_file` appears. Returns the list of records, in
    start order."""
    host, port, base = check_loopback(url)
    if requests < 1 or duration <= 0 or concurrency < 1:
        raise ValueError("--requests, --duration and --concurrency must be positive")
    body = json.dumps({"model": model, "prompt": "The capital of France is", "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if key:
        headers["Authorization"] = "Bearer " + key
    path = base + "/v1/completions"
    interval = duration / float(requests)
    start = time.time()
    lock = threading.Lock()
    state = {"next": 0}
    records = []

    def worker():
        while True:
            with lock:
                index = state["next"]
                if index >= requests:
                    return
                state["next"] = index + 1
            wait = start + index * interval - time.time()
            if wait > 0:
                time.sleep(wait)
            if stop_file and os.path.exists(stop_file):
                with lock:
                    state["next"] = requests
                return
            record = one_request(host, port, path, body, headers, timeout)
            record["index"] = index
            with lock:
                records.append(record)

    threads = [threading.Thread(target=worker, daemon=True) for _worker in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records.sort(key=lambda r: r["index"])
    return records


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        payload = b'{"choices":[{"text":" Paris"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(INSTANCE_HEADER, "selftest-blue")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        return


def self_check():
    """Pacing, bound and counting against a local server; the refusal of a non-loopback URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        begin = time.time()
        records = run("http://127.0.0.1:%d" % server.server_address[1], "", "m", 40, 2.0, 4)
        took = time.time() - begin
        with tempfile.TemporaryDirectory() as tmp:
            stop = os.path.join(tmp, "stop")
            timer = threading.Timer(0.5, lambda: open(stop, "w").close())
            timer.start()
            stopped = run("http://127.0.0.1:%d" % server.server_address[1], "", "m", 400, 20.0, 4, stop_file=stop)
            timer.join()
    finally:
        server.shutdown()
    summary = summarize(records)
    assert summary["sent"] == 40 and summary["failed"] == 0, summary
    assert 1.9 <= took < 10, took
    assert summary["instances"] == {"selftest-blue": 40}, summary
    # Stopped after about 0.5 s of 20: about 10 of 400 sent, none failed.
    assert 1 <= len(stopped) < 40 and summarize(stopped)["failed"] == 0, len(stopped)
    try:
        check_loopback("http://192.0.2.1:8080")
    except ValueError:
        pass
    else:
        raise AssertionError("a non-loopback URL was accepted")
    print(json.dumps({"self_check": "ok", "requests": 40, "duration_s": round(took, 2), "summary": summary}))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return self_check()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--key-env", default="GPU_STACK_API_KEY", help="environment variable holding the key")
    parser.add_argument("--output", required=True, help="JSON file: records and summary")
    parser.add_argument("--stop-file", help="start no new request once this file exists")
    args = parser.parse_args(argv)
    try:
        records = run(args.url, os.environ.get(args.key_env, ""), args.model, args.requests, args.duration,
                      args.concurrency, args.max_tokens, args.timeout, args.stop_file)
    except ValueError as exc:
        parser.error(str(exc))
    result = {"config": {"url": args.url, "requests": args.requests, "duration_s": args.duration,
                         "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                         "stopped_early": len(records) < args.requests},
              "summary": summarize(records), "records": records}
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
