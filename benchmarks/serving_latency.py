# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request latency through the gateway against the engine directly, on a served host.

Runs inside the stand-in host (`podman exec`), so both the gateway and the engine, which
listens on the host's loopback only, are reached over loopback; the traffic never leaves the
machine. Sends the same one-token completion N times to each, alternating, and reports
p50/p90/p99 and the gateway's added latency.

    python benchmarks/serving_latency.py [--container gpu-stack-demo] [--requests 50]
"""
import argparse
import json
import os
import subprocess
import sys
import time

PROBE = r'''
import json, statistics, sys, time, urllib.request
gateway, engine, key, model, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
body = json.dumps({"model": model, "prompt": "The capital of France is", "max_tokens": 1,
                   "temperature": 0}).encode()
def once(base, auth):
    req = urllib.request.Request(base + "/v1/completions", data=body, method="POST",
                                 headers=dict({"Content-Type": "application/json"}, **auth))
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter() - start
for base, auth in ((gateway, {"Authorization": "Bearer " + key}), (engine, {})):
    once(base, auth)                                   # warm both paths
times = {"gateway": [], "engine": []}
for _ in range(n):
    times["gateway"].append(once(gateway, {"Authorization": "Bearer " + key}))
    times["engine"].append(once(engine, {}))
print(json.dumps(times))
'''


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", default="gpu-stack-demo")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--engine", default="http://127.0.0.1:8001")
    parser.add_argument("--key", default="demo-key-0123456789abcdef")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    cmd = ["podman", "exec", args.container, "python3", "-c", PROBE, args.gateway, args.engine, args.key,
           args.model, str(args.requests)]
    try:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print("serving_latency: could not measure on %s: %s (run `make demo` first)" % (args.container, exc))
        return 1
    times = json.loads(out)
    rows = {}
    for path, values in times.items():
        rows[path] = {"p50_ms": pct(values, 50) * 1e3, "p90_ms": pct(values, 90) * 1e3,
                      "p99_ms": pct(values, 99) * 1e3, "n": len(values)}
    added = rows["gateway"]["p50_ms"] - rows["engine"]["p50_ms"]
    print("%-8s %8s %8s %8s %5s" % ("path", "p50 ms", "p90 ms", "p99 ms", "n"))
    for path, row in rows.items():
        print("%-8s %8.1f %8.1f %8.1f %5d" % (path, row["p50_ms"], row["p90_ms"], row["p99_ms"], row["n"]))
    print("gateway adds %.1f ms at p50 (ratio %.2f)" % (added, rows["gateway"]["p50_ms"] / rows["engine"]["p50_ms"]))
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/serving_latency.json", "w") as fh:
        json.dump({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "one_token_completion": rows,
                   "gateway_added_p50_ms": added}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
