// An agency's side of the Certless message contract, written with the npm
// `jose` library only. Run by envelope/interop_test.go:
//
//   node agency.mjs sign    < {"jwk": <private JWK>, "agency": "...", "subject": {...}}
//       prints a signed verification_request (compact JWS)
//   node agency.mjs verify  < {"jwks": <broker JWKS>, "jws": "..."}
//       verifies a Certless receipt offline and prints its payload
//   node agency.mjs decrypt < {"jwk": <private P-256 JWK>, "jwks": ..., "jwe": "..."}
//       opens a confidential receipt, verifies it and prints its payload
import * as jose from 'jose';
import { ulid } from 'ulid';

const input = JSON.parse(await new Promise((resolve, reject) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { s += c; });
  process.stdin.on('end', () => resolve(s));
  process.stdin.on('error', reject);
}));

// buildRequest is what the README shows: the payload, signed with EdDSA and
// the kid "<agency-id>/<key-id>".
async function buildRequest({ jwk, agency, subject }) {
  const key = await jose.importJWK(jwk, 'EdDSA');
  const now = new Date();
  const payload = {
    type: 'verification_request',
    id: ulid(),
    agency,
    issued_at: now.toISOString(),
    expires_at: new Date(now.getTime() + 10 * 60 * 1000).toISOString(),
    purpose: { basis: 'notarisation', case_ref: '(2026)长证字第1234号' },
    body: { query: 'identity', subject },
  };
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
    .sign(key);
}

// verifyReceipt checks a receipt offline against the broker's published JWKS.
async function verifyReceipt(jwks, jws) {
  const keys = jose.createLocalJWKSet(jwks);
  const { payload, protectedHeader } = await jose.compactVerify(jws, keys, { algorithms: ['EdDSA', 'ES256'] });
  const receipt = JSON.parse(new TextDecoder().decode(payload));
  if (receipt.type !== 'receipt' || receipt.agency !== protectedHeader.kid.split('/')[0]) {
    throw new Error(`not a receipt signed by its issuer: ${protectedHeader.kid}`);
  }
  return receipt;
}

switch (process.argv[2]) {
  case 'sign':
    process.stdout.write(await buildRequest(input));
    break;
  case 'verify':
    process.stdout.write(JSON.stringify(await verifyReceipt(input.jwks, input.jws)));
    break;
  case 'decrypt': {
    const key = await jose.importJWK(input.jwk, 'ECDH-ES+A256KW');
    const { plaintext, protectedHeader } = await jose.compactDecrypt(input.jwe, key, {
      keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'],
    });
    if (protectedHeader.kid !== input.jwk.kid) throw new Error(`JWE for ${protectedHeader.kid}`);
    const receipt = await verifyReceipt(input.jwks, new TextDecoder().decode(plaintext));
    process.stdout.write(JSON.stringify(receipt));
    break;
  }
  default:
    console.error('usage: node agency.mjs sign|verify|decrypt < input.json');
    process.exit(2);
}
