// A real OAuth 2.0 authorization server for the agent's OAuth client test
// (tests/integration/oauth_external_test.sh): oidc-provider
// (https://github.com/panva/node-oidc-provider, docs/README.md of the
// package) over HTTPS on 127.0.0.1, with the client credentials grant
// (features.clientCredentials) and resource indicators (RFC 8707) whose
// default resource gets JWT access tokens (RFC 9068).
//
// Usage: node server.mjs CONFIG_JSON
//   {
//     "cert": PEM file, "key": PEM file,   // the TLS server certificate and key
//     "ready_file": path,                  // gets the issuer URL once listening
//     "resource": "urn:...",               // the default resource (token aud)
//     "clients": [                         // client_credentials clients
//       {"client_id": ..., "token_endpoint_auth_method": "client_secret_basic" |
//        "client_secret_post", "client_secret_file": path},
//       {"client_id": ..., "token_endpoint_auth_method": "private_key_jwt",
//        "public_keys": [{"kid": ..., "file": public key PEM}]}
//     ]
//   }
// Client secrets are read from their files at every client lookup, so a test
// rotates a secret by rewriting its file (no restart). The port is chosen by
// the OS. Stops on SIGTERM/SIGINT.
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// The client metadata of a configured client, read fresh (secret rotation).
function clientMetadata(id) {
  const entry = config.clients.find((client) => client.client_id === id);
  if (!entry) return undefined;
  const metadata = {
    client_id: entry.client_id,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: entry.token_endpoint_auth_method,
  };
  if (entry.client_secret_file) {
    metadata.client_secret = readFileSync(entry.client_secret_file, 'utf8');
  }
  if (entry.public_keys) {
    metadata.jwks = {
      keys: entry.public_keys.map(({ kid, file }) => ({
        ...createPublicKey(readFileSync(file)).export({ format: 'jwk' }),
        kid,
        use: 'sig',
      })),
    };
  }
  return metadata;
}

// oidc-provider's storage interface: clients come from the config (above),
// everything else (replay detection of client assertion jti values, grants)
// lives in memory for the life of the process.
class Adapter {
  static store = new Map();

  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    Adapter.store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    if (this.model === 'Client') return clientMetadata(id);
    const entry = Adapter.store.get(this.key(id));
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return entry.payload;
  }

  async findByUid() {
    return undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = Adapter.store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    Adapter.store.delete(this.key(id));
  }

  async revokeByGrantId() {}
}

// The provider's own token-signing key: new for every run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-signing', use: 'sig', alg: 'RS256' };

let provider;
const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  (req, res) => provider.callback()(req, res),
);

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  provider = new Provider(issuer, {
    adapter: Adapter,
    jwks: { keys: [signingKey] },
    ttl: { ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== config.resource) throw new errors.InvalidTarget();
          return {
            scope: 'metadata:read',
            audience: config.resource,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  provider.on('grant.error', (ctx, error) => console.error('grant.error', error.message, error.error_description ?? ''));
  // Written atomically: the test reads the file as soon as it appears.
  writeFileSync(`${config.ready_file}.tmp`, issuer);
  renameSync(`${config.ready_file}.tmp`, config.ready_file);
  console.error(`oidc-provider listening at ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
