// A receiver for clipping-worker's webhooks, in Node.js (18 or later).
//
// It verifies each delivery with the official Standard Webhooks library over
// the raw body, then validates the JSON against the published schema
// (docs/webhook-payload.schema.json), de-duplicates by `webhook-id` and
// ignores an event older than one already seen for its job.
//
//   npm install standardwebhooks ajv
//   WEBHOOK_SECRET=whsec_... node docs/examples/receiver.mjs [PORT]
//
// Each accepted delivery is printed as one JSON line. Answers: 200 accepted
// (or a duplicate, or stale), 401 bad signature, 422 a body that breaks the
// schema. The worker retries anything but 2xx and 410.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import Ajv2020 from "ajv/dist/2020.js";

const schemaUrl = new URL("../webhook-payload.schema.json", import.meta.url);
const validate = new Ajv2020({ strict: false, validateFormats: false }).compile(
  JSON.parse(readFileSync(schemaUrl, "utf8")),
);
const webhook = new Webhook(process.env.WEBHOOK_SECRET);

// In production these live in your database, updated in the same
// transaction as whatever the event changes.
const seenIds = new Set();
const lastSequence = new Map();

function answer(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    // The signature covers the exact bytes received: verify before parsing.
    const body = Buffer.concat(chunks).toString("utf8");
    let payload;
    try {
      payload = webhook.verify(body, req.headers);
    } catch (error) {
      return answer(res, 401, { error: `bad signature: ${error.message}` });
    }
    if (!validate(payload)) {
      const [first] = validate.errors;
      return answer(res, 422, { error: `${first.instancePath || "(body)"}: ${first.message}` });
    }
    const id = req.headers["webhook-id"];
    if (seenIds.has(id)) {
      return answer(res, 200, { received: true, duplicate: true });
    }
    seenIds.add(id);
    const stale = payload.sequence <= (lastSequence.get(payload.job_id) ?? 0);
    if (!stale) {
      lastSequence.set(payload.job_id, payload.sequence);
    }
    console.log(JSON.stringify({
      webhook_id: id,
      event: payload.event,
      job_id: payload.job_id,
      sequence: payload.sequence,
      progress_percent: payload.progress_percent,
      stale,
    }));
    answer(res, 200, { received: true });
  });
});

server.listen(Number(process.argv[2] ?? 8080), "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}/` }));
});
