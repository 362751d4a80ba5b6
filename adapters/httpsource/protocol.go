// Package httpsource connects Certless to a police record service over a
// small JSON protocol, in both directions: Client is an adapters.Source that
// calls such a service, Handler serves any adapters.Source as one.
//
// # Protocol
//
//	POST /v1/answer    Content-Type: application/json
//	                   body: an adapters.Query as JSON
//	                   {"type":"criminal_record",
//	                    "subject":{"id_number":"...","name":"..."},
//	                    "related":{...},            (kinship only)
//	                    "as_of":"2026-11-01T00:00:00Z"} (optional)
//	200                an adapters.Answer as JSON
//	                   {"found":true,"fields":{...},"as_of":"...",
//	                    "valid_until":"...","source":"..."}
//	400                the query is invalid         {"error":"..."}
//	413                the request is too large     {"error":"..."}
//	503 / 504          the source failed / timed out {"error":"..."}
//	POST /v1/changes   body: an adapters.ChangeQuery as JSON
//	                   {"type":"hukou_cancellation","region":"220500",
//	                    "after":"...","until":"...","cursor":"...","limit":100}
//	200                an adapters.ChangePage as JSON
//	                   {"changes":[{"subject":{...},"at":"...","answer":{...}}],
//	                    "next":"2026-06-01/2205…","more":true}
//	400 / 404          invalid query / the source keeps no change feed
//	GET /v1/health     200 {"source":"<name>"}
//
// "Not found" is a 200 answer with found=false, never a 404. Error texts carry
// no ID numbers or names.
//
// # Client promises
//
// Each attempt has its own timeout. Network errors, timeouts, 429, 5xx and
// garbled answers (below) are retried a bounded number of times with exponential backoff and full
// jitter; other answers are not. A circuit breaker (sony/gobreaker) counts
// failed attempts; while it is open, Answer fails at once with an error
// wrapping adapters.ErrUnavailable, as it does when all attempts failed.
// A 200 whose body is not well-formed JSON (garbled, truncated, empty) is
// a failed attempt like a 5xx: retried, counted by the breaker, and
// adapters.ErrUnavailable once the attempts are spent. A well-formed body
// that is not a protocol answer (an unknown member, a wrong type, found
// without fields) is refused as answer_invalid and not retried: asking
// again gets the same answer. Responses larger than a bound are refused
// (answer_invalid). A 400 yields an error wrapping
// adapters.ErrInvalidQuery; a cancelled caller context yields its error.
package httpsource

import "github.com/certless/certless/adapters"

// Path is where the protocol's answer endpoint lives.
const Path = "/v1/answer"

// ChangesPath is where the protocol's change feed lives.
const ChangesPath = "/v1/changes"

// HealthPath answers GET with the source's name.
const HealthPath = "/v1/health"

type errorBody struct {
	Error string `json:"error"`
}

type healthBody struct {
	Source string `json:"source"`
}

var (
	_ adapters.Source     = (*Client)(nil)
	_ adapters.ChangeFeed = (*Client)(nil)
)
