// Package fault is the one small vocabulary every stage of Certless uses to
// say what a failure means for the message being handled:
//
//   - Transient: the message may succeed later (a store, Kafka or a record
//     source is unavailable, a deadline passed). The broker retries it,
//     within a bound, and answers "unavailable" when the bound runs out.
//   - Permanent: this message can never succeed (an invalid query, a record
//     source that refuses it, an answer that cannot be represented). The
//     broker answers it at once — a signed "rejected" receipt with Reason —
//     and never retries it.
//
// Errors are classified where they arise, by wrapping them with Permanent
// or Transient; KindOf reads the classification anywhere up the chain. An
// error nobody classified is Transient: retrying is bounded, so the safe
// default costs time, never a stalled partition.
package fault

import (
	"errors"
	"fmt"
)

// Kind is what a failure means for the message.
type Kind uint8

// The two kinds.
const (
	TransientKind Kind = iota // retry within the bound
	PermanentKind             // answer now; retrying cannot help
)

func (k Kind) String() string {
	if k == PermanentKind {
		return "permanent"
	}
	return "transient"
}

// Error is a classified failure. Reason is a stable code (lower-case
// letters, digits and underscores) for a permanent failure; it is what the
// rejection receipt, the metrics and the reports carry.
type Error struct {
	Kind   Kind
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Kind.String() + ": " + e.Reason
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as a permanent failure with a stable reason code.
func Permanent(reason string, err error) error {
	return &Error{Kind: PermanentKind, Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error (%w allowed).
func Permanentf(reason, format string, args ...any) error {
	return Permanent(reason, fmt.Errorf(format, args...))
}

// Transient marks err as transient. It is only needed to override a
// permanent classification further down the chain; unclassified errors are
// transient already.
func Transient(err error) error { return &Error{Kind: TransientKind, Err: err} }

// KindOf returns the kind of the outermost classified error in err's chain,
// TransientKind when there is none. KindOf(nil) is TransientKind.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return TransientKind
}

// IsPermanent reports whether err is classified permanent.
func IsPermanent(err error) bool { return err != nil && KindOf(err) == PermanentKind }

// ReasonOf returns the reason code of a permanent err, "" otherwise.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind == PermanentKind {
		return e.Reason
	}
	return ""
}
