"""Runs the official `standardwebhooks` package for the Rust interop test.

The Rust test suite (tests/it/interop.rs) starts this script once per check,
writes one JSON request to stdin and reads one JSON reply from stdout, so that
both implementations are compared on exactly the same bytes.

Requests:
  {"op": "verify", "secret": "whsec_...", "body": "...", "headers": {...}}
      -> {"ok": true} or {"ok": false, "error": "..."}
  {"op": "sign", "secret": "whsec_...", "msg_id": "...", "timestamp": 123, "body": "..."}
      -> {"signature": "v1,..."}

Every reply also carries the package version. A verification failure is a
normal reply; anything else (bad request, import error) exits non-zero so the
Rust test fails instead of mistaking a crash for a rejection.
"""

import json
import sys
from datetime import datetime, timezone
from importlib.metadata import version

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    request = json.load(sys.stdin)
    webhook = Webhook(request["secret"])
    reply = {"version": version("standardwebhooks")}
    op = request["op"]
    if op == "verify":
        try:
            # json_parse=False: the body need not be JSON, and only the
            # signature check is under test.
            webhook.verify(request["body"].encode("utf-8"), request["headers"], json_parse=False)
            reply["ok"] = True
        except WebhookVerificationError as error:
            reply["ok"] = False
            reply["error"] = str(error)
    elif op == "sign":
        timestamp = datetime.fromtimestamp(request["timestamp"], tz=timezone.utc)
        reply["signature"] = webhook.sign(request["msg_id"], timestamp, request["body"])
    else:
        raise SystemExit(f"unknown op {op!r}")
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
