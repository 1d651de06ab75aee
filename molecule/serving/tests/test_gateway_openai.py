"""The gateway as OpenAI's own Python client sees it, through an SSH tunnel to the stand-in's
loopback: models, chat, streaming, completions, OpenAI-shaped errors (401, 404, 400, 413, 429),
the audit log, and concurrent requests batched by the engine rather than queued."""
import hashlib
import json
import socket
import subprocess
import threading
import time
import uuid

import openai
import pytest

KEY = "molecule-test-key-0123456789abcdef"
# The second key of molecule.yml, whose serving_max_tokens_cap_per_key entry caps it at 16.
SMALL_KEY = "molecule-small-key-0123456789abcdef"
SMALL_CAP = 16
CAP = 1024
CONTEXT = 2048
MODEL = "smollm2-135m-instruct"
AUDIT_LOG = "/var/log/nginx/gpu-stack-demo-audit.log"
ENGINE = "http://127.0.0.1:8001"
JOURNAL_UNITS = ("gpu-stack-serving-demo-blue.service", "nginx.service")
AUDIT_FIELDS = ("time", "caller", "method", "path", "model", "prompt_sha256", "stream", "prompt_tokens",
                "completion_tokens", "status", "latency_s", "instance", "error")


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_sha256(field):
    """The audit log's prompt hash: sha256 of the messages or prompt field as compact JSON."""
    return sha256(json.dumps(field, separators=(",", ":"), ensure_ascii=False))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def gateway(host, inventory_name, standin_inventory, tmp_path_factory):
    """http://127.0.0.1:<port>/v1 on this machine, forwarded over the stand-in's SSH to its gateway
    on 127.0.0.1:8080 (the same key, user and known_hosts Ansible uses)."""
    inventory = standin_inventory(tmp_path_factory.mktemp("tunnel") / "inventory.json", inventory_name)
    with open(inventory, encoding="utf-8") as handle:
        conn = json.load(handle)["gpu_hosts"]["hosts"][inventory_name]
    port = free_port()
    tunnel = subprocess.Popen(
        ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ControlMaster=no",
         "-L", "127.0.0.1:%d:127.0.0.1:8080" % port, "-p", str(conn["ansible_port"]),
         "-i", conn["ansible_private_key_file"]] + conn["ansible_ssh_common_args"].split()
        + ["%s@%s" % (conn["ansible_user"], conn["ansible_host"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline:
        assert tunnel.poll() is None, tunnel.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        tunnel.kill()
        raise AssertionError("the SSH tunnel to the gateway did not open")
    yield "http://127.0.0.1:%d/v1" % port
    tunnel.terminate()
    tunnel.wait(timeout=10)


def client(gateway, key=KEY):
    # No retries: a refusal must reach the test as it is.
    return openai.OpenAI(base_url=gateway, api_key=key, max_retries=0, timeout=120)


def audit_lines(host):
    return [json.loads(line) for line in host.file(AUDIT_LOG).content_string.splitlines() if line]


def audit_for(host, digest, timeout=10):
    """The audit lines of the requests whose prompt hashed to digest (nginx writes the line when
    the answer is complete)."""
    deadline = time.time() + timeout
    while True:
        found = [entry for entry in audit_lines(host) if entry["prompt_sha256"] == digest]
        if found or time.time() > deadline:
            return found
        time.sleep(0.5)


def question(text):
    """A chat prompt made unique with a nonce, and the hash the audit log must show for it."""
    messages = [{"role": "user", "content": "%s (request %s)" % (text, uuid.uuid4().hex)}]
    return messages, prompt_sha256(messages)


def test_lists_the_served_model(gateway):
    assert [model.id for model in client(gateway).models.list()] == [MODEL]


def test_chat_answers(gateway):
    answer = client(gateway).chat.completions.create(
        model=MODEL, max_tokens=24, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    assert "Paris" in answer.choices[0].message.content, answer
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 24


def test_streaming_chat_arrives_in_chunks_with_usage(gateway):
    stream = client(gateway).chat.completions.create(
        model=MODEL, max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert len(pieces) > 3 and "Paris" in "".join(pieces), pieces
    # One chunk per token, but the end of the answer is a token without text.
    assert usage is not None and len(pieces) <= usage.completion_tokens <= 24, usage


def test_completions_answer(gateway):
    answer = client(gateway).completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                                                temperature=0)
    assert answer.choices[0].text.strip(), answer
    assert answer.usage.completion_tokens <= 8


def test_a_wrong_key_gets_401(gateway):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(gateway, key="wrong-key-0123456789abcdef").models.list()
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"


def test_an_unknown_model_gets_404_model_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as refused:
        client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "model_not_found"
    assert refused.value.body["type"] == "invalid_request_error"
    assert "'gpt-4o' does not exist" in refused.value.message and MODEL in refused.value.message


def test_an_endpoint_the_engine_does_not_serve_gets_404_json(gateway):
    with pytest.raises(openai.NotFoundError) as refused:
        client(gateway).embeddings.create(model=MODEL, input="Hi")
    assert refused.value.code == "unknown_url"
    assert "/v1/embeddings" in refused.value.message


def test_a_prompt_above_the_context_gets_400_with_the_limit(gateway):
    # About 3000 tokens, above the plan's context of 2048: llama.cpp's tokenizer counts them.
    messages = [{"role": "user", "content": "hello " * 3000}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    assert refused.value.code == "context_length_exceeded"
    assert "maximum context length is %d tokens" % CONTEXT in refused.value.message, refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).completions.create(model=MODEL, prompt="hello " * 1200, max_tokens=1000)
    assert refused.value.code == "context_length_exceeded" and "1000 in the completion" in refused.value.message


def test_max_tokens_above_the_cap_gets_400_with_the_limit(gateway):
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).chat.completions.create(model=MODEL, max_tokens=CAP + 1,
                                                messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "max_tokens_above_limit"
    assert "limit of %d completion tokens" % CAP in refused.value.message


def test_a_key_with_a_cap_of_its_own(gateway):
    small = client(gateway, key=SMALL_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        small.completions.create(model=MODEL, prompt="Hi", max_tokens=SMALL_CAP + 1)
    assert "limit of %d completion tokens" % SMALL_CAP in refused.value.message
    # Without max_tokens the key's cap is added: a long answer stops there.
    answer = small.chat.completions.create(
        model=MODEL, temperature=0, extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "Count from one to one hundred in words."}])
    assert answer.usage.completion_tokens == SMALL_CAP and answer.choices[0].finish_reason == "length"


def test_a_body_above_the_size_limit_gets_413_json(gateway):
    with pytest.raises(openai.APIStatusError) as refused:
        client(gateway).completions.create(model=MODEL, prompt="x" * (1024 * 1024 + 1), max_tokens=1)
    assert refused.value.status_code == 413 and refused.value.code == "request_too_large"


def test_a_burst_above_the_rate_limit_gets_429(gateway):
    # 10 r/s with a burst of 20 per key (the role's defaults); the small key, so the others'
    # requests keep their budget.
    small = client(gateway, key=SMALL_KEY)
    outcomes = []

    def one():
        try:
            small.models.list()
            outcomes.append(200)
        except openai.RateLimitError as refused:
            outcomes.append((refused.status_code, refused.code))

    threads = [threading.Thread(target=one) for _request in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(200) >= 20, outcomes
    assert (429, "rate_limit_exceeded") in outcomes, outcomes


def test_one_audit_line_per_request_without_key_or_text(host, gateway):
    api = client(gateway)
    messages, digest = question("What is the capital of France?")
    answer = api.chat.completions.create(model=MODEL, max_tokens=8, temperature=0, messages=messages)
    streamed_messages, streamed_digest = question("What is the capital of Italy?")
    chunks = list(api.chat.completions.create(model=MODEL, max_tokens=8, temperature=0, messages=streamed_messages,
                                              stream=True, stream_options={"include_usage": True}))
    usage = [chunk.usage for chunk in chunks if chunk.usage][0]
    bare_messages, bare_digest = question("What is the capital of Spain?")
    list(api.chat.completions.create(model=MODEL, max_tokens=8, temperature=0, messages=bare_messages, stream=True,
                                     extra_body={"ignore_eos": True}))
    refused_messages, refused_digest = question("Which model are you?")
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="gpt-4o", messages=refused_messages)
    prompt = "The capital of Germany is (request %s)" % uuid.uuid4().hex
    completion = api.completions.create(model=MODEL, prompt=prompt, max_tokens=4)

    lines = audit_for(host, digest)
    assert len(lines) == 1, lines
    entry = lines[0]
    assert set(AUDIT_FIELDS) <= set(entry), entry
    assert entry["caller"] == sha256(KEY) and entry["model"] == MODEL and entry["status"] == 200
    assert entry["path"] == "/v1/chat/completions" and entry["method"] == "POST" and entry["stream"] is False
    assert entry["prompt_tokens"] == answer.usage.prompt_tokens
    assert entry["completion_tokens"] == answer.usage.completion_tokens
    assert entry["instance"] == "demo-blue" and entry["latency_s"] > 0 and entry["error"] == ""

    streamed = audit_for(host, streamed_digest)
    assert len(streamed) == 1 and streamed[0]["stream"] is True, streamed
    assert (streamed[0]["prompt_tokens"], streamed[0]["completion_tokens"]) == (usage.prompt_tokens,
                                                                                usage.completion_tokens)
    # Streamed without include_usage: llama.cpp's timings of the last chunk give the counts.
    bare = audit_for(host, bare_digest)
    assert len(bare) == 1 and bare[0]["completion_tokens"] == 8 and bare[0]["prompt_tokens"] > 0, bare

    refused = audit_for(host, refused_digest)
    assert len(refused) == 1, refused
    assert (refused[0]["status"], refused[0]["error"], refused[0]["model"]) == (404, "model_not_found", "gpt-4o")
    assert refused[0]["completion_tokens"] is None and refused[0]["instance"] == ""

    completed = audit_for(host, prompt_sha256(prompt))
    assert len(completed) == 1 and completed[0]["path"] == "/v1/completions", completed
    assert completed[0]["completion_tokens"] == completion.usage.completion_tokens

    content = host.file(AUDIT_LOG).content_string
    for secret in [KEY, SMALL_KEY, prompt, "capital of", messages[0]["content"], streamed_messages[0]["content"]]:
        assert secret not in content
    log = host.file(AUDIT_LOG)
    assert (log.user, log.group, log.mode) == ("www-data", "adm", 0o640)


def test_every_line_of_the_audit_log_is_json_with_the_fields(host, gateway):
    client(gateway).models.list()
    lines = audit_lines(host)
    assert lines
    for entry in lines:
        assert set(AUDIT_FIELDS) <= set(entry), entry
        assert entry["caller"] in ("", sha256(KEY), sha256(SMALL_KEY))
    assert {entry["status"] for entry in lines} >= {200, 400, 401, 404, 413, 429}


def engine_counters(host):
    """llama-server's /metrics counters (the engine's loopback port, inside the stand-in)."""
    text = host.check_output("curl -sf --max-time 5 %s/metrics", ENGINE)
    return {name: float(value) for name, value in
            (line.split() for line in text.splitlines() if line.startswith("llamacpp:"))}


def test_concurrent_requests_are_batched_not_queued(host, gateway):
    """Four streamed chats at once (the engine has four sequences): every one has its first token
    before any has its last, so they were generated together, and the engine's decode steps
    produced several tokens each (a queue produces one per step). Wall times are printed, not
    asserted: other work on the same cores moves them."""
    api = client(gateway)

    def run(spans, index):
        began = time.time()
        first = None
        stream = api.chat.completions.create(
            model=MODEL, max_tokens=48, temperature=0, stream=True, extra_body={"ignore_eos": True},
            messages=[{"role": "user", "content": "Tell a story about a lighthouse (%d)." % index}])
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.time()
        spans[index] = (began, first, time.time())

    single = {}
    run(single, 0)
    one = single[0][2] - single[0][0]
    before = engine_counters(host)
    spans = {}
    threads = [threading.Thread(target=run, args=(spans, index)) for index in range(4)]
    began = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    four = time.time() - began
    after = engine_counters(host)
    assert len(spans) == 4, spans
    last_first_token = max(first for _began, first, _end in spans.values())
    first_end = min(end for _began, _first, end in spans.values())
    predicted = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    decodes = after["llamacpp:n_decode_total"] - before["llamacpp:n_decode_total"]
    print("one chat %.2f s, four at once %.2f s (%.1f x); last first token %.2f s before the first end; "
          "%d tokens in %d decode steps" % (one, four, four / one, first_end - last_first_token, predicted, decodes))
    assert last_first_token < first_end, spans
    assert predicted >= 4 * 48 and predicted / decodes >= 2, (predicted, decodes)


@pytest.mark.parametrize("extra, message", [
    ({"serving_max_tokens_cap_per_key": {"not-a-hash": 5}}, "these entries are not that: not-a-hash: 5"),
    ({"serving_max_tokens_cap_per_key": {sha256("a-key-nobody-has-0123456789"): 5}},
     "which is the sha256 of none of serving_api_keys"),
])
def test_a_bad_cap_is_refused_before_anything_changes(host, run_playbook, inventory_name, extra, message):
    site = "/etc/nginx/conf.d/gpu-stack-demo.conf"
    before = host.check_output("sha256sum %s", site)
    rc, out = run_playbook("molecule/_shared/converge.yml", inventory_name, extra)
    assert rc != 0 and message in out, out[-3000:]
    assert "changed=0" in out, out[-1500:]
    assert host.check_output("sha256sum %s", site) == before
