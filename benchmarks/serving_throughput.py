# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throughput and latency of a served model through its gateway, with OpenAI's Python client.

For each concurrency level (1, 4 and 8 by default) it sends a bounded number of streamed chat
completions, at most that many in flight, each asking for the same number of tokens, and reports
completion tokens per second (all requests of the level together), p50 and p99 latency and p50
time to the first token. With --cold-start it also measures the engine's cold start on the
served host: the unit stopped, started again, and the seconds until a one-token completion
through the gateway succeeds (the unit is read over SSH: the demo host's by default).

Loopback only: every URL must resolve to 127.0.0.0/8 or ::1. Bounded: --requests per level
(at most 256) and --time-limit seconds per level (at most 600), after which no request starts.

    make demo                                       # the demo host: gateway on 127.0.0.1:18080
    python3 benchmarks/serving_throughput.py --cold-start

Side by side with another server of the same model, e.g. llama-cpp-python's (the engine this
collection used before; docs/serving.md says how to start it):

    python3 benchmarks/serving_throughput.py --compare http://127.0.0.1:18081/v1 \\
        --compare-label llama-cpp-python

The key comes from GPU_STACK_API_KEY (the second server's from GPU_STACK_COMPARE_API_KEY), else
from inventories/local (the demo's key). Prints a table and writes JSON to
benchmarks/results/serving_throughput.json. The gateway's rate limit (serving_rate_limit, 10 r/s
by default) counts: refused requests are reported as 429s.
"""
import argparse
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "serving_throughput.json")
DEMO_VARS = os.path.join(REPO, "inventories", "local", "group_vars", "gpu_hosts.yml")
DEMO_SSH = os.path.join(REPO, "build", "demo", "ssh")
PROMPT = "Write a short story about a lighthouse keeper and a storm."
MAX_REQUESTS = 256
MAX_SECONDS = 600


def check_loopback(url):
    """Refuse a URL whose host is not this machine's loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("%r is not an http(s) URL" % url)
    infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ValueError("%s must point at this machine's loopback; %s resolves to %s"
                         % (url, parts.hostname, ", ".join(sorted(addresses))))
    return url.rstrip("/")


def percentile(values, fraction):
    """Nearest-rank percentile (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def demo_key():
    """The first serving_api_keys entry of inventories/local (a demo value, not a secret)."""
    try:
        import yaml  # the control-node toolchain has it
        with open(DEMO_VARS, encoding="utf-8") as handle:
            return (yaml.safe_load(handle) or {}).get("serving_api_keys", [None])[0]
    except (OSError, ImportError, IndexError, AttributeError):
        return None


def one_request(client, model, max_tokens, ignore_eos, deadline):
    """One streamed chat completion: (latency s, first token s, completion tokens, error or None)."""
    import openai

    extra = {"ignore_eos": True} if ignore_eos else None
    began = time.perf_counter()
    first, chunks, usage = None, 0, None
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.7,
            stream=True, stream_options={"include_usage": True}, extra_body=extra,
            timeout=max(1.0, deadline - time.time()))
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                if first is None:
                    first = time.perf_counter() - began
            if getattr(chunk, "usage", None):
                usage = chunk.usage
    except openai.APIStatusError as exc:
        return time.perf_counter() - began, None, 0, "HTTP %d" % exc.status_code
    except openai.APIError as exc:
        return time.perf_counter() - began, None, 0, type(exc).__name__
    # A server that sends no usage: one streamed chunk per token.
    tokens = usage.completion_tokens if usage else chunks
    return time.perf_counter() - began, first, tokens, None


def run_level(client, model, concurrency, requests, max_tokens, ignore_eos, time_limit):
    """requests requests with at most concurrency in flight, none started after time_limit s."""
    results = []
    lock = threading.Lock()
    remaining = [requests]
    began = time.time()
    deadline = began + time_limit

    def worker():
        while True:
            with lock:
                if remaining[0] == 0 or time.time() >= deadline:
                    return
                remaining[0] -= 1
            outcome = one_request(client, model, max_tokens, ignore_eos, deadline + time_limit)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker) for _worker in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.time() - began
    ok = [r for r in results if r[3] is None]
    errors = {}
    for result in results:
        if result[3] is not None:
            errors[result[3]] = errors.get(result[3], 0) + 1
    tokens = sum(r[2] for r in ok)
    # With ignore_eos every answer has max_tokens tokens; a 200 with fewer was cut short (a server
    # that stops one streamed request when the next arrives). Latencies count whole answers only.
    whole = [r for r in ok if r[2] >= max_tokens] if ignore_eos else ok
    return {
        "concurrency": concurrency, "requests": len(results), "ok": len(ok), "short": len(ok) - len(whole),
        "errors": errors, "wall_s": round(wall, 3), "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "p50_latency_s": _round(percentile([r[0] for r in whole], 0.50)),
        "p99_latency_s": _round(percentile([r[0] for r in whole], 0.99)),
        "p50_first_token_s": _round(percentile([r[1] for r in whole if r[1] is not None], 0.50)),
    }


def _round(value):
    return None if value is None else round(value, 3)


def ssh_command(args):
    return ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + args.known_hosts, "-i", args.ssh_key, "-p", str(args.ssh_port),
            "%s@%s" % (args.ssh_user, args.ssh_host)]


def cold_start(args, client, model):
    """Seconds from the engine unit's start until a one-token completion through the gateway succeeds."""
    import openai

    check_loopback("http://%s:%d" % (args.ssh_host, args.ssh_port))
    ssh = ssh_command(args)
    unit = args.unit
    if not unit:
        listed = subprocess.run(ssh + ["systemctl", "list-units", "--type=service", "--state=active", "--no-legend",
                                       "--plain", "'gpu-stack-serving-*'"],
                                check=True, stdout=subprocess.PIPE, universal_newlines=True, timeout=60).stdout
        units = [line.split()[0] for line in listed.splitlines() if line.strip() and "liveness" not in line]
        if len(units) != 1:
            raise RuntimeError("found %s active engine units; name one with --unit" % (units or "no"))
        unit = units[0]
    subprocess.run(ssh + ["sudo", "systemctl", "stop", shlex.quote(unit)], check=True, timeout=120)
    began = time.time()
    subprocess.run(ssh + ["sudo", "systemctl", "start", "--no-block", shlex.quote(unit)], check=True, timeout=120)
    deadline = began + args.time_limit
    while time.time() < deadline:
        try:
            client.completions.create(model=model, prompt="Hi", max_tokens=1, timeout=10)
            return {"unit": unit, "start_to_ready_s": round(time.time() - began, 2)}
        except openai.APIError:
            time.sleep(0.2)
    raise RuntimeError("%s was not ready %d s after its start" % (unit, args.time_limit))


def measure(label, url, key, args):
    import openai

    client = openai.OpenAI(base_url=url, api_key=key or "none", max_retries=0, timeout=args.time_limit)
    model = args.model or [m.id for m in client.models.list()][0]
    # Warm the path (connections, the engine's first request) before anything is timed.
    one_request(client, model, 4, False, time.time() + args.time_limit)
    levels = [run_level(client, model, level, args.requests, args.max_tokens, not args.no_ignore_eos,
                        args.time_limit) for level in args.concurrency]
    return {"label": label, "url": url, "model": model, "levels": levels}


def print_table(runs, cold):
    print("%-24s %5s %5s %5s %6s %9s %8s %8s %9s  %s" % ("server", "conc", "ok", "short", "req", "tok/s", "p50 s",
                                                         "p99 s", "p50 ttft", "errors"))
    for run in runs:
        for level in run["levels"]:
            print("%-24s %5d %5d %5d %6d %9s %8s %8s %9s  %s" % (
                run["label"][:24], level["concurrency"], level["ok"], level["short"], level["requests"],
                level["tokens_per_s"],
                level["p50_latency_s"], level["p99_latency_s"], level["p50_first_token_s"],
                ", ".join("%s x%d" % item for item in sorted(level["errors"].items())) or "-"))
    if cold:
        print("cold start: %s ready %.2f s after its start" % (cold["unit"], cold["start_to_ready_s"]))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:18080/v1", help="OpenAI base URL (the demo's gateway)")
    parser.add_argument("--label", default="gateway (llama-server)")
    parser.add_argument("--compare", help="a second OpenAI base URL, measured the same way after the first")
    parser.add_argument("--compare-label", default="compare")
    parser.add_argument("--model", help="model name (default: the first the server lists)")
    parser.add_argument("--concurrency", default="1,4,8", help="comma-separated levels (default 1,4,8)")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (default 16, at most 256)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens each request asks for (default 64)")
    parser.add_argument("--no-ignore-eos", action="store_true",
                        help="let the model stop early (by default each request generates max-tokens tokens)")
    parser.add_argument("--time-limit", type=int, default=120, help="seconds per level (default 120, at most 600)")
    parser.add_argument("--cold-start", action="store_true",
                        help="stop and start the engine unit on the served host over SSH and time its readiness")
    parser.add_argument("--unit", help="the engine unit for --cold-start (default: the one active)")
    parser.add_argument("--ssh-host", default="127.0.0.1")
    parser.add_argument("--ssh-port", type=int, default=18022)
    parser.add_argument("--ssh-user", default="ops")
    parser.add_argument("--ssh-key", default=os.path.join(DEMO_SSH, "id_ed25519"))
    parser.add_argument("--known-hosts", default=os.path.join(DEMO_SSH, "known_hosts"))
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(level) for level in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency must be comma-separated integers, got %r" % args.concurrency)
    if not all(1 <= level <= 64 for level in args.concurrency):
        parser.error("--concurrency levels must be 1 to 64")
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error("--requests must be 1 to %d" % MAX_REQUESTS)
    if not 1 <= args.time_limit <= MAX_SECONDS:
        parser.error("--time-limit must be 1 to %d" % MAX_SECONDS)
    if args.max_tokens < 1:
        parser.error("--max-tokens must be 1 or more")
    try:
        args.gateway = check_loopback(args.gateway)
        args.compare = check_loopback(args.compare) if args.compare else None
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import openai  # requirements/control-node.txt
    except ImportError:
        print("serving_throughput: needs the openai package: run it with .venv/bin/python (make venv)")
        return 2
    key = os.environ.get("GPU_STACK_API_KEY") or demo_key()
    runs, cold = [], None
    try:
        runs.append(measure(args.label, args.gateway, key, args))
        if args.cold_start:
            client = openai.OpenAI(base_url=args.gateway, api_key=key, max_retries=0)
            cold = cold_start(args, client, runs[0]["model"])
        if args.compare:
            runs.append(measure(args.compare_label, args.compare, os.environ.get("GPU_STACK_COMPARE_API_KEY"), args))
    except (openai.APIError, OSError, RuntimeError, subprocess.SubprocessError, IndexError) as exc:
        # Report, with what was measured so far.
        print("serving_throughput: %s: %s (is the server up? `make demo` starts the demo host)"
              % (type(exc).__name__, exc))
        if not runs:
            return 1
    print_table(runs, cold)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "prompt": PROMPT, "max_tokens": args.max_tokens, "ignore_eos": not args.no_ignore_eos,
                   "runs": runs, "cold_start": cold}, handle, indent=2)
    print(json.dumps({"runs": runs, "cold_start": cold}))
    print("serving_throughput: wrote %s" % os.path.relpath(args.output, REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
