# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small HTTP file server for the model_storage tests: GET and HEAD with single byte
ranges (206, 416), a JSON-lines request log, and an injectable interruption.

    range_http_server.py --root DIR --port N --log FILE --control DIR [--bind 127.0.0.1]

Every request is logged as {"method", "path", "range", "status", "sent"}. To cut a transfer,
write a byte count to CONTROL/cut/<url path with '/' as '__'>: the next GET of that path
sends that many bytes of the body and closes the connection, and the control file is
removed (one interruption). python3 -m http.server cannot answer range requests, which a
resumed download needs. Standard library only.
"""
import argparse
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-storage-test/1"

    def log_message(self, fmt, *args):  # the JSON log replaces the default stderr lines
        pass

    def record(self, status, sent):
        entry = {"method": self.command, "path": urlparse(self.path).path,
                 "range": self.headers.get("Range"), "status": status, "sent": sent}
        with LOCK:
            with open(self.server.log_path, "a") as handle:
                handle.write(json.dumps(entry) + "\n")

    def resolve(self):
        rel = unquote(urlparse(self.path).path).lstrip("/")
        full = os.path.realpath(os.path.join(self.server.root, rel))
        if not full.startswith(self.server.root + os.sep) or not os.path.isfile(full):
            return None, rel
        return full, rel

    def do_HEAD(self):
        self.serve(head=True)

    def do_GET(self):
        self.serve(head=False)

    def serve(self, head):
        full, rel = self.resolve()
        if full is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.record(404, 0)
            return
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            match = re.match(r"^bytes=(\d+)-(\d*)$", wanted.strip())
            if not match or int(match.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.record(416, 0)
                return
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if head:
            self.record(status, 0)
            return
        limit = length
        cut_file = os.path.join(self.server.control, "cut", rel.replace("/", "__"))
        if os.path.exists(cut_file):
            with open(cut_file) as handle:
                limit = min(length, int(handle.read().strip() or 0))
            os.unlink(cut_file)
        sent = 0
        with open(full, "rb") as handle:
            handle.seek(start)
            while sent < limit:
                block = handle.read(min(256 * 1024, limit - sent))
                if not block:
                    break
                self.wfile.write(block)
                sent += len(block)
        self.wfile.flush()
        self.record(status, sent)
        if sent < length:
            self.close_connection = True
            self.connection.shutdown(2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--log", required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args()
    os.makedirs(os.path.join(args.control, "cut"), exist_ok=True)
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.root = os.path.realpath(args.root)
    server.log_path = args.log
    server.control = args.control
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
