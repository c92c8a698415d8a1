"""A receiver for clipping-worker's webhooks, in Python.

It verifies each delivery with the official Standard Webhooks library over
the raw body, then validates the JSON against the published schema
(docs/webhook-payload.schema.json), de-duplicates by `webhook-id` and
ignores an event older than one already seen for its job.

    pip install standardwebhooks jsonschema
    WEBHOOK_SECRET=whsec_... python docs/examples/receiver.py [PORT]

Each accepted delivery is printed as one JSON line. Answers: 200 accepted
(or a duplicate, or stale), 401 bad signature, 422 a body that breaks the
schema. The worker retries anything but 2xx and 410.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Lock

import jsonschema
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "webhook-payload.schema.json"

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))

# In production these live in your database, updated in the same
# transaction as whatever the event changes.
lock = Lock()
seen_ids = set()
last_sequence = {}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            # The signature covers the exact bytes received: verify before parsing.
            webhook.verify(body, headers)
        except WebhookVerificationError as error:
            return self.answer(401, {"error": f"bad signature: {error}"})
        payload = json.loads(body)
        error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "(body)"
            return self.answer(422, {"error": f"{where}: {error.message}"})

        with lock:
            if headers["webhook-id"] in seen_ids:
                return self.answer(200, {"received": True, "duplicate": True})
            seen_ids.add(headers["webhook-id"])
            job = payload["job_id"]
            stale = payload["sequence"] <= last_sequence.get(job, 0)
            if not stale:
                last_sequence[job] = payload["sequence"]

        print(json.dumps({
            "webhook_id": headers["webhook-id"],
            "event": payload["event"],
            "job_id": payload["job_id"],
            "sequence": payload["sequence"],
            "progress_percent": payload["progress_percent"],
            "stale": stale,
        }), flush=True)
        self.answer(200, {"received": True})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        # One line per delivery on stdout is enough; keep stderr for errors.
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    print(json.dumps({"listening": f"http://127.0.0.1:{server.server_port}/"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
