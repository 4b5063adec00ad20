// A fake Dapr sidecar for the canary integration test: only the secrets API,
// on plain http 127.0.0.1 with a port chosen by the OS.
//
// Follows Dapr's documented HTTP API:
//   https://docs.dapr.io/reference/api/secrets_api/  (GET /v1.0/secrets/<store>/<name>:
//     200 with a JSON object; a store with name/value semantics answers
//     {"<name>": "<value>"}; 204 secret not found; 400 store missing or
//     misconfigured; 403 access denied; 500 failure)
//   https://docs.dapr.io/operations/security/api-token/  (with DAPR_API_TOKEN set, every
//     request must carry the dapr-api-token header; 401 otherwise)
//
// Usage: node fake_dapr.mjs PORT_FILE STORE TOKEN_FILE SECRETS_DIR
//   PORT_FILE    written with the listening port once the server is up
//   STORE        the one secret store component served (e.g. kv)
//   TOKEN_FILE   holds the API token the requests must carry
//   SECRETS_DIR  the secret named NAME is the content of SECRETS_DIR/NAME
//
// It logs one line per request to stdout: method, target, "token ok" or
// "token bad", the status, and "violation: ..." for anything a real client
// of the documented API would not send. It never logs a token or a value:
// the test greps this log for the canaries.
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';

const [portFile, storeName, tokenFile, secretsDir] = process.argv.slice(2);
if (!portFile || !storeName || !tokenFile || !secretsDir) {
  console.error('usage: fake_dapr.mjs PORT_FILE STORE TOKEN_FILE SECRETS_DIR');
  process.exit(2);
}

const expectedToken = readFileSync(tokenFile);
const log = (line) => process.stdout.write(`[fake-dapr] ${line}\n`);

function tokenOk(header) {
  if (typeof header !== 'string') return false;
  const got = Buffer.from(header);
  return got.length === expectedToken.length && timingSafeEqual(got, expectedToken);
}

function errorBody(code, message) {
  return JSON.stringify({ errorCode: code, message });
}

// A secret name as Dapr routes it: one path segment, percent-decoded.
function decodeSegment(raw) {
  try {
    const decoded = decodeURIComponent(raw);
    return decoded.length > 0 && !decoded.includes('/') && decoded !== '.' && decoded !== '..'
      ? decoded
      : null;
  } catch {
    return null;
  }
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const violations = [];
    const answer = (status, body, type = 'application/json') => {
      const headers = body ? { 'Content-Type': type } : {};
      res.writeHead(status, headers);
      res.end(body || undefined);
      const ok = tokenOk(req.headers['dapr-api-token']) ? 'token ok' : 'token bad';
      log(`${req.method} ${req.url} ${ok} -> ${status}`);
      for (const v of violations) log(`violation: ${v}`);
    };

    // The API token middleware runs before routing (Dapr's order).
    if (!tokenOk(req.headers['dapr-api-token'])) {
      answer(401, 'invalid api token', 'text/plain');
      return;
    }
    if (req.method !== 'GET') violations.push(`method ${req.method}, want GET`);
    if (Buffer.concat(chunks).length !== 0) violations.push('request has a body');
    if (req.headers.authorization !== undefined) violations.push('unexpected Authorization header');
    if (req.headers['proxy-authorization'] !== undefined) {
      violations.push('request came through a proxy');
    }
    const prefix = '/v1.0/secrets/';
    const target = req.url;
    if (!target.startsWith(prefix) || target.includes('?')) {
      violations.push(`unexpected target ${target}`);
      answer(404, '');
      return;
    }
    const parts = target.slice(prefix.length).split('/');
    if (parts.length !== 2) {
      violations.push(`unexpected target ${target}`);
      answer(404, '');
      return;
    }
    const store = decodeSegment(parts[0]);
    const name = decodeSegment(parts[1]);
    if (store === null || name === null) {
      answer(400, errorBody('ERR_MALFORMED_REQUEST', 'malformed request'));
      return;
    }
    if (violations.length > 0) {
      answer(400, errorBody('ERR_MALFORMED_REQUEST', 'malformed request'));
      return;
    }
    if (store !== storeName) {
      answer(400, errorBody('ERR_SECRET_STORE_NOT_FOUND', `secret store is not configured`));
      return;
    }
    let value;
    try {
      value = readFileSync(join(secretsDir, name), 'utf8');
    } catch {
      answer(204, ''); // documented: secret not found
      return;
    }
    // Name/value semantics (like Dapr's Vault or local file store):
    // the secret's name is the only key.
    answer(200, JSON.stringify({ [name]: value }));
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  // Atomically, so the test never reads a partial port number.
  writeFileSync(`${portFile}.tmp`, String(port));
  renameSync(`${portFile}.tmp`, portFile);
  log(`listening on 127.0.0.1:${port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive connections would hold close() open
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
