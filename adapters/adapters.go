// Package adapters defines what a police record source answers and the
// values that cross the boundary between the broker and a source.
//
// A Source answers one Query about one Subject. Its promises:
//
//   - Found=false means the records do not know the subject, or the name given
//     does not belong to the ID number (for every query type except identity,
//     which answers the match as a predicate). It is a decision, not an error.
//   - Every returned error is classified with package fault. Transient
//     (unclassified, or wrapping ErrUnavailable): the source could not
//     answer now and the caller may retry within its bound; ErrUnavailable
//     says the source is known to be down (an open circuit breaker, retries
//     spent) so retrying at once is pointless. Permanent: this query can
//     never be answered by this source — ErrInvalidQuery (reason
//     invalid_query), a source that refuses the query (ReasonSourceRefused)
//     or answers something malformed (ReasonAnswerInvalid). The caller
//     answers a permanent error at once and never retries it.
//   - Answer.Fields holds the full answer for the query type (see the
//     Field* constants); the broker minimises it to the fields an agreement
//     allows. Values are JSON-compatible: string, bool, numbers, []any,
//     map[string]any, so an answer survives a JSON round trip unchanged.
//   - Implementations are safe for concurrent use and honour ctx.
//
// Implementations live in subpackages (sqlsource, httpsource); the synthetic
// Jilin records used in development and tests live in records.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/fault"
)

// QueryType names what a query asks about a subject.
type QueryType string

// The query types a source answers.
const (
	QueryIdentity          QueryType = "identity"
	QueryHousehold         QueryType = "household"
	QueryKinship           QueryType = "kinship"
	QueryFormerNames       QueryType = "former_names"
	QueryResidence         QueryType = "residence"
	QueryHukouCancellation QueryType = "hukou_cancellation"
	QueryCriminalRecord    QueryType = "criminal_record"
)

var allQueryTypes = []QueryType{
	QueryIdentity, QueryHousehold, QueryKinship, QueryFormerNames,
	QueryResidence, QueryHukouCancellation, QueryCriminalRecord,
}

// AllQueryTypes returns every query type, in a fixed order. The slice is a
// fresh copy.
func AllQueryTypes() []QueryType { return append([]QueryType(nil), allQueryTypes...) }

// Valid reports whether t is one of the known query types.
func (t QueryType) Valid() bool {
	for _, k := range allQueryTypes {
		if t == k {
			return true
		}
	}
	return false
}

// Validity is how long an answer of type t stays valid after it was given,
// the window a paper certificate of that kind would carry.
func (t QueryType) Validity() time.Duration {
	switch t {
	case QueryCriminalRecord:
		return 30 * 24 * time.Hour
	case QueryIdentity, QueryHousehold, QueryResidence:
		return 90 * 24 * time.Hour
	case QueryKinship, QueryFormerNames, QueryHukouCancellation:
		return 180 * 24 * time.Hour
	}
	return 0
}

// Subject identifies a person by the 18-digit resident ID number (GB 11643)
// and the name the requester believes belongs to it.
type Subject struct {
	IDNumber string `json:"id_number"`
	Name     string `json:"name"`
}

// Query asks one question about one subject.
type Query struct {
	Type    QueryType `json:"type"`
	Subject Subject   `json:"subject"`
	// Related is the second person of a kinship query; nil otherwise.
	Related *Subject `json:"related,omitempty"`
	// AsOf is the instant the answer speaks for; zero means now.
	AsOf time.Time `json:"as_of,omitzero"`
}

// Reason codes of the permanent errors of a source.
const (
	ReasonInvalidQuery  = "invalid_query"  // the query is malformed or asks the impossible
	ReasonSourceRefused = "source_refused" // the source refuses the query (an HTTP 4xx other than 408 and 429)
	ReasonAnswerInvalid = "answer_invalid" // the source answered something that is not a valid answer
)

// ErrInvalidQuery is wrapped by errors about a malformed Query: unknown type,
// missing subject fields, a kinship query without a second, different person,
// an as-of instant in the future. It is permanent (reason invalid_query).
var ErrInvalidQuery = fault.Permanent(ReasonInvalidQuery, errors.New("adapters: invalid query"))

// ErrUnavailable is wrapped by errors that say the source cannot answer at
// all right now (circuit open, upstream down).
var ErrUnavailable = errors.New("adapters: record source unavailable")

// Validate checks the shape of q (not the ID check digit, which the message
// schema layer validates). Errors wrap ErrInvalidQuery.
func (q Query) Validate() error {
	if !q.Type.Valid() {
		return fmt.Errorf("%w: unknown query type %q", ErrInvalidQuery, q.Type)
	}
	if q.Subject.IDNumber == "" || q.Subject.Name == "" {
		return fmt.Errorf("%w: subject needs id_number and name", ErrInvalidQuery)
	}
	if q.Type == QueryKinship {
		if q.Related == nil || q.Related.IDNumber == "" || q.Related.Name == "" {
			return fmt.Errorf("%w: kinship needs a related subject with id_number and name", ErrInvalidQuery)
		}
		if q.Related.IDNumber == q.Subject.IDNumber {
			return fmt.Errorf("%w: kinship needs two different persons", ErrInvalidQuery)
		}
	}
	return nil
}

// Answer is a source's answer to one Query.
type Answer struct {
	// Found is false when the subject is unknown or the name does not match
	// the ID number; the broker decides not_found. Fields is then empty.
	Found bool `json:"found"`
	// Fields is the full answer; the broker minimises it to allowed names.
	Fields map[string]any `json:"fields,omitempty"`
	// AsOf is the instant the answer speaks for.
	AsOf time.Time `json:"as_of"`
	// ValidUntil ends the answer's validity window: Type.Validity() after
	// the later of AsOf and the time the answer was given.
	ValidUntil time.Time `json:"valid_until"`
	// Source is the Name of the source that answered.
	Source string `json:"source"`
}

// Source is what each record source implementation provides. The broker
// declares its own, smaller interface at the point of use.
type Source interface {
	// Name identifies the source in answers, logs and metrics; it is stable
	// and holds no personal data.
	Name() string
	// Answer answers q. See the package comment for what errors mean.
	Answer(ctx context.Context, q Query) (Answer, error)
}
