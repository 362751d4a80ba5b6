// Package translog is Certless's transparency log, from the auditor's side:
// the leaf format, the RFC 6962 tree arithmetic, checkpoints, the C2SP
// tlog-tiles HTTP view, receipt proofs and the audit of a whole log. It
// imports nothing of the broker, so an auditor's tool can check a Certless
// log with this package, or with any C2SP-conformant tool, and public keys
// only.
//
// # Standards
//
//   - Tree: RFC 6962 §2.1 Merkle tree hashing (golang.org/x/mod/sumdb/tlog):
//     a record hash is SHA-256(0x00 || leaf), an interior node
//     SHA-256(0x01 || left || right).
//   - Checkpoints: C2SP tlog-checkpoint bodies ("<origin>\n<size>\n<base64
//     root>\n"), signed as C2SP signed-note with the log's Ed25519 key
//     (golang.org/x/mod/sumdb/note), cosigned by witnesses with C2SP
//     tlog-cosignature (cosignature/v1) through C2SP tlog-witness.
//   - Serving: C2SP tlog-tiles under /log/ (Handler): /log/checkpoint,
//     /log/tile/<L>/<N>[.p/<W>] and /log/tile/entries/<N>[.p/<W>], each
//     entry bundle a sequence of big-endian uint16 length + leaf bytes.
//   - Proofs: C2SP tlog-proof (c2sp.org/tlog-proof@v1), the leaf carried as
//     its extra data, inside a receipt bundle (Bundle).
//
// # Leaf encoding (version 1)
//
// A leaf is one JSON object, encoded as RFC 8785 (JCS) canonical JSON: UTF-8,
// no insignificant white space, members sorted by name, integers in plain
// decimal. Every string value is drawn from the characters
// [A-Za-z0-9._:+/@-] (no escaping is ever needed, so Go's encoder and any
// JCS implementation produce the same bytes; a code from a sender with
// other characters is logged as the "sha256:<hex>" of its UTF-8 bytes, see
// Token), empty strings and zero numbers
// are omitted, and a leaf is at most MaxLeafSize bytes. The members:
//
//	v                  1, always
//	kind               what the leaf records: "decision", "dead_letter"; later
//	                   kinds ("agreement", "agency", "batch_manifest",
//	                   "feedback", "dispute", "status_list",
//	                   "subject_lookup") use the same members
//	time               when it was recorded: RFC 3339 UTC with exactly six
//	                   fractional digits, "2026-12-01T08:00:00.123456Z"
//	agency             the authenticated sending agency (absent for a dead
//	                   letter whose sender is unknown)
//	type               the message type ("request", ...)
//	query              the query type of a request
//	outcome            answered, not_found, denied, rejected, unavailable,
//	                   internal_error (a decision) or dead_letter
//	reason             the stable reason code ("" when answered)
//	request            "sha256:<hex>" of the signed message as received
//	receipt            "sha256:<hex>" of the record published for it: the
//	                   signed (possibly encrypted) receipt exactly as on
//	                   Kafka, or the dead-letter record
//	agreement          "sha256:<hex>" digest of the agreement the decision
//	                   rests on, with agreement_id and agreement_version
//	subject            "sha256:<hex>" of the document a non-decision leaf
//	                   records (an agreement file, a directory change, ...)
//
// A leaf holds digests and codes only: no ID number, name or answer field
// ever appears in one. Whoever holds a receipt can recompute its leaf's
// receipt digest and compare agency, query, outcome, reason and request
// digest with the receipt's body (Bundle.Verify does).
package translog
