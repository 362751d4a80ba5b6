// Package witness is the log's side of transparency log witnessing: it asks
// witnesses to cosign the log's checkpoints, checks and keeps their
// cosignatures, and verifies that a checkpoint carries enough of them.
//
// # Standards
//
//   - c2sp.org/tlog-witness: the add-checkpoint call (Witness.AddCheckpoint).
//     POST <submission prefix>/add-checkpoint with the body
//     "old <size>\n", one base64 RFC 6962 consistency proof hash per line
//     (at most 63, none when the old size is zero), an empty line, and the
//     signed checkpoint. 200 answers with one or more note signature lines;
//     409 Conflict with the witness's latest cosigned size as
//     text/x.tlog.size ("<size>\n"), returned as *ConflictError; 400, 403,
//     404 and 422 refuse the request for good; 5xx may pass.
//   - c2sp.org/tlog-cosignature: Ed25519 cosignature/v1 (CosignatureVerifier).
//     The key ID is SHA-256(name || "\n" || 0x04 || public key)[:4]; the
//     signature is the big-endian uint64 timestamp followed by the Ed25519
//     signature of "cosignature/v1\ntime <timestamp>\n" || checkpoint body.
//   - c2sp.org/signed-note: verifier keys ("<name>+<key ID hex>+base64(0x04
//     || public key)", the form litewitness prints) and signature lines
//     ("— <name> base64(key ID || signature)\n"), via
//     golang.org/x/mod/sumdb/note.
//   - c2sp.org/tlog-checkpoint: the cosigned body ("<origin>\n<size>\n<base64
//     root>\n" and optional extension lines), parsed with filippo.io/torchwood.
//
// # Failures
//
// Errors are classified with package fault: a network error, a timeout, a
// 5xx, 408 or 429 is transient; any other refusal, a malformed answer and a
// cosignature that does not verify are permanent, with a reason code
// (witness_bad_request, witness_forbidden, witness_unknown_log,
// witness_inconsistent, witness_rejected, witness_bad_response,
// witness_no_cosignature, witness_bad_cosignature, witness_request_invalid).
// A *ConflictError is left unclassified (transient): the caller retries with
// the witness's size and a proof from it.
//
// A cosignature is never returned, and so never stored, unless it verified
// against the witness's key over exactly the submitted checkpoint body.
package witness
