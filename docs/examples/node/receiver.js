// A partner's endpoint for Herald's webhooks (docs/partner-webhooks.md). It
// checks the Standard Webhooks signature of every request against the
// endpoint's secrets, ignores a delivery it has already processed, and
// answers 204; a request that does not verify gets 401.
//
//   npm ci && WEBHOOK_SECRETS=whsec_... node receiver.js
//
// Settings, from the environment:
//   WEBHOOK_SECRETS  the endpoint's whsec_ secrets, separated by spaces or commas
//                    (two while secrets are being rotated); required
//   LISTEN           host:port to listen on; default 127.0.0.1:8000
//   TLS_CERT, TLS_KEY  serve HTTPS with this certificate and key (Herald sends only
//                    to https:// endpoints outside a development set-up)
//   SAVE_DIR         if set, keep each verified request's body as <webhook-id>.json and
//                    its herald-pgp-signature header as <webhook-id>.pgp-signature
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const path = require("node:path");
const { Webhook } = require("standardwebhooks");

const secrets = (process.env.WEBHOOK_SECRETS || "").split(/[\s,]+/).filter(Boolean);
if (secrets.length === 0) {
  console.error("set WEBHOOK_SECRETS to the endpoint's whsec_ secret(s)");
  process.exit(2);
}
const hooks = secrets.map((s) => new Webhook(s));
const listen = process.env.LISTEN || "127.0.0.1:8000";
const saveDir = process.env.SAVE_DIR;

// Delivery is at least once: keep the ids already processed (in a
// database, for a few days, in a real receiver).
const seen = new Set();

function handle(req, res) {
  if (req.method !== "POST" || req.url !== "/herald") {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > 1 << 20) req.destroy();
    else chunks.push(c);
  });
  req.on("end", () => {
    // Verify the exact bytes received, before any JSON parsing.
    const body = Buffer.concat(chunks);
    let event;
    for (const wh of hooks) {
      try {
        // verify also refuses a webhook-timestamp more than five minutes
        // away from this machine's clock; it returns the parsed JSON.
        event = wh.verify(body, req.headers);
        break;
      } catch (err) {
        // WebhookVerificationError: try the next secret
      }
    }
    if (!event) {
      console.log(`refused a request from ${req.socket.remoteAddress}: invalid signature or timestamp`);
      res.writeHead(401).end("invalid signature");
      return;
    }
    const id = req.headers["webhook-id"];
    if (seen.has(id)) {
      res.writeHead(204).end();
      return;
    }
    seen.add(id);
    if (saveDir && !/[\/\\]/.test(id)) {
      fs.writeFileSync(path.join(saveDir, `${id}.json`), body);
      fs.writeFileSync(path.join(saveDir, `${id}.pgp-signature`), req.headers["herald-pgp-signature"] || "");
    }
    // Store the alert and act on it here. A notice means: treat every
    // alert in references as withdrawn.
    const a = event.alert;
    console.log(`verified ${id} ${event.type}: alert ${a.id} TLP:${a.tlp} ${JSON.stringify(a.title)}` +
      ` notice=${JSON.stringify(event.notice || "")} references=${JSON.stringify(a.references || [])}` +
      ` (${req.headers["user-agent"]})`);
    res.writeHead(204).end();
  });
}

const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
const server = process.env.TLS_CERT
  ? https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }, handle)
  : http.createServer(handle);
server.listen(port, host, () => console.log(`listening on ${listen}, POST /herald`));
