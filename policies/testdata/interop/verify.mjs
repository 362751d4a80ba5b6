// A second implementation of the agreement co-signature check, written with
// the npm `jose` library only. Run by policies/interop_test.go:
//
//   node verify.mjs < {"doc": <base64 of the file's exact bytes>,
//                      "sigs": <the .jws.json object>, "jwks": [<JWKS>...]}
//
// It verifies every signature of the detached JWS (RFC 7515 §7.2.1 and
// Appendix F: the payload is the document file, not in the JWS) with the
// key its kid names, and prints [{"kid", "alg", "iat"}] in order; any
// failure exits non-zero.
import * as jose from 'jose';

const input = JSON.parse(await new Promise((resolve, reject) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { s += c; });
  process.stdin.on('end', () => resolve(s));
  process.stdin.on('error', reject);
}));

const doc = Buffer.from(input.doc, 'base64');
const payload = jose.base64url.encode(doc);
const keys = input.jwks.flatMap((set) => set.keys);
const out = [];
for (const sig of input.sigs.signatures) {
  const header = jose.decodeProtectedHeader(sig);
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`no key ${header.kid}`);
  const key = await jose.importJWK(jwk, header.alg);
  const { protectedHeader } = await jose.flattenedVerify(
    { protected: sig.protected, signature: sig.signature, payload },
    key,
    { algorithms: ['EdDSA', 'ES256'] },
  );
  out.push({ kid: protectedHeader.kid, alg: protectedHeader.alg, iat: protectedHeader.iat });
}
process.stdout.write(JSON.stringify(out));
