#!/usr/bin/env python3
"""A stand-in for the Hugging Face hub's file endpoint, so the data fetcher's download path is tested offline.

Serves FOLDER/<owner>/<repo>/<file> at /<owner>/<repo>/resolve/<revision>/<file> (HEAD and GET, with the commit
and ETag headers huggingface_hub's hf_hub_download reads) on 127.0.0.1 at a free port, which it writes to
PORT_FILE once it listens. Anything else is 404.
  fake_hf_hub.py FOLDER PORT_FILE
"""
import hashlib
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def file_bytes(self):
        parts = self.path.split("?")[0].split("/")  # "", owner, repo, "resolve", revision, file
        if len(parts) != 6 or parts[3] != "resolve":
            return None
        path = os.path.join(sys.argv[1], parts[1], parts[2], parts[5])
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    def answer(self, with_body):
        data = self.file_bytes()
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", '"' + hashlib.sha1(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self):
        self.answer(False)

    def do_GET(self):
        self.answer(True)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    server.serve_forever()
