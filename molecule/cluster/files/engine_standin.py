# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The head's engine for the gateway tests: a group's vLLM cannot start on a stand-in without a
GPU, so this answers in its place on cluster.host:cluster.port with the shape of vLLM's
OpenAI-compatible server (the model list, completions with their usage). Nothing else.
  python3 engine_standin.py PORT MODEL"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODEL = int(sys.argv[1]), sys.argv[2]


class Engine(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/v1/models":
            return self.answer(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm"}]})
        return self.answer(404, {"detail": "Not Found"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/v1/completions":
            return self.answer(404, {"detail": "Not Found"})
        words = len(str(body.get("prompt", "")).split())
        tokens = int(body.get("max_tokens") or 16)
        return self.answer(200, {"id": "cmpl-standin", "object": "text_completion", "model": MODEL,
                                 "choices": [{"index": 0, "text": " ok" * tokens, "finish_reason": "length"}],
                                 "usage": {"prompt_tokens": words + 1, "completion_tokens": tokens,
                                           "total_tokens": words + 1 + tokens}})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Engine).serve_forever()
