"""A mock OpenAI-compatible chat endpoint for the autointerp tests (http.server on 127.0.0.1, port 0).

It answers each protocol in the shape the real prompts ask for: delphi's explainer with
``[EXPLANATION]: ...``, SAEBench's explainer with "This neuron activates on ...", delphi's
scorers with a 0/1 list as long as the prompt's examples, SAEBench's scorer with numbers.
A request whose last message contains a word of ``slow`` waits ``delay`` seconds first
(a timeout for a short client timeout); one containing a word of ``broken`` gets a body
without ``choices`` (a malformed reply).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MockLLM:
    def __init__(self, slow: tuple[str, ...] = (), broken: tuple[str, ...] = (), delay: float = 2.0):
        self.slow, self.broken, self.delay = slow, broken, delay
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                last = body["messages"][-1]["content"]
                if any(w in last for w in owner.slow):
                    time.sleep(owner.delay)
                if any(w in last for w in owner.broken):
                    payload = {"error": "no choices here"}
                else:
                    payload = {"choices": [{"message": {"role": "assistant", "content": owner.answer(body)}}]}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def answer(body: dict) -> str:
        system = body["messages"][0]["content"]
        last = body["messages"][-1]["content"]
        if system.startswith("You are a meticulous AI researcher"):
            return "Patterns found.\n[EXPLANATION]: a word that is a city"
        if "comma-separated list" in system:
            return "1, 2"
        if system.startswith("We're studying neurons"):
            return "This neuron activates on a word that is a city."
        n = len(re.findall(r"^Example \d+:", last, re.MULTILINE))
        return "[" + ",".join("1" if i % 2 == 0 else "0" for i in range(n)) + "]"

    def __enter__(self) -> MockLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
