// Package policies is the consultation mechanism (省级会商) of Certless:
// data-sharing agreements between a requesting agency and the police data
// owner, co-signed, loaded from the policies folder and enforced on every
// request.
//
// What it promises:
//
//   - An agreement is one file per version, <name>.yaml (or <name>.json),
//     schema agreement.v2. Parse decodes it strictly: unknown members,
//     duplicate keys, YAML anchors, aliases and tags, several documents,
//     over-long lists and files over MaxDocumentBytes are refused; the
//     schema is checked, then what a schema cannot say (fields documented
//     for the query type, known region codes, from < until, cron syntax).
//   - Co-signing is RFC 7515 JWS in JSON General Serialization with a
//     detached payload, stored beside the document as <name>.yaml.jws.json,
//     one signature per party. The signed payload is the document's exact
//     file bytes: nothing is canonicalised, so the file cannot be reformatted
//     after signing without breaking both signatures, and any JOSE library
//     verifies it with the file as the payload. Digest(doc) = "sha256:<hex>"
//     of those bytes is what receipts cite.
//   - Verify accepts an agreement only with exactly one valid signature of
//     each party (kid "<party>/<key-id>", alg EdDSA or low-S ES256, a
//     protected "iat"), by a key not revoked at that iat. Every refusal is an
//     *Error with a stable Reason.
//   - Lifecycle: either party suspends or terminates at once, alone, with a
//     signed statement in <name>.yaml.status.jws; only the party that
//     suspended resumes; termination is final. Expiry is validity.until
//     passing, checked at every decision.
//   - Load reads a folder into an immutable *Set; a refused file is a
//     Problem and never in the Set. A Watcher swaps whole sets atomically, so
//     a decision never sees a half-loaded folder, and keeps the last good
//     version of an agreement whose files became invalid.
//   - Set.Authorise is pure: the same set, request, time and usage answer
//     give the same Decision. Its checks run in a fixed order with stable
//     reason codes (see the Reason constants), and a quota is counted only
//     when every other check passed. A returned error is transient.
package policies
