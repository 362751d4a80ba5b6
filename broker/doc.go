// Package broker is the Certless exchange pipeline: it turns a signed
// verification request consumed from Kafka into exactly one signed receipt.
//
// The pipeline reads top to bottom (pipeline.go):
//
//	redelivery? → decode+verify → authorise → route → answer → minimise
//	→ seal receipt → record decision → publish
//
// and recovery, timeouts, metrics and logging wrap it as middleware
// (middleware_*.go); they do not live inside stages.
//
// Its promises:
//   - Nothing downstream of Verify sees an unverified payload.
//   - A rejection is a result, not an error: a message whose sender cannot be
//     authenticated yields a dead-letter entry, an authenticated but invalid
//     or unauthorised request yields a signed receipt with a reason code. A
//     returned error means "transient, retry" and the message is not
//     committed.
//   - Every decision is durable in the decision store before its receipt is
//     published, and a redelivered request re-emits the stored receipt byte
//     for byte.
//   - The Kafka offset is committed in one place (Runner), after the outputs
//     of a message are published.
package broker
