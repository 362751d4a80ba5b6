// Reads {"jwt": "...", "jwk": {...}} on stdin; verifies the vc+jwt with the
// npm jose library alone and checks the VCDM 2.0 properties; prints what it
// saw as JSON, or exits 1.
import { compactVerify, importJWK } from 'jose';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
}));

const fail = (msg) => { console.error(msg); process.exit(1); };
const key = await importJWK(input.jwk, input.jwk.alg);
let res;
try {
  res = await compactVerify(input.jwt, key, { algorithms: ['EdDSA', 'ES256'] });
} catch (e) {
  fail('signature: ' + e.message);
}
const h = res.protectedHeader;
if (h.typ !== 'vc+jwt') fail('typ ' + h.typ);
const vc = JSON.parse(new TextDecoder().decode(res.payload));
const ctx = vc['@context'];
if (!Array.isArray(ctx) || ctx[0] !== 'https://www.w3.org/ns/credentials/v2') fail('@context ' + JSON.stringify(ctx));
if (!Array.isArray(vc.type) || !vc.type.includes('VerifiableCredential')) fail('type ' + JSON.stringify(vc.type));
const issuer = typeof vc.issuer === 'string' ? vc.issuer : vc.issuer && vc.issuer.id;
if (!issuer || !/^[a-z][a-z0-9+.-]*:/.test(issuer)) fail('issuer ' + JSON.stringify(vc.issuer));
if (!vc.credentialSubject || typeof vc.credentialSubject !== 'object') fail('credentialSubject');
for (const p of ['validFrom', 'validUntil']) {
  if (vc[p] !== undefined && Number.isNaN(Date.parse(vc[p]))) fail(p + ' ' + vc[p]);
}
const st = vc.credentialStatus;
if (st && (st.type !== 'BitstringStatusListEntry' || st.statusPurpose !== 'revocation' || !st.statusListCredential)) fail('credentialStatus ' + JSON.stringify(st));
console.log(JSON.stringify({ kid: h.kid, alg: h.alg, typ: h.typ, id: vc.id, issuer, decision: vc.credentialSubject.decision, status: st ? st.statusListCredential : '' }));
