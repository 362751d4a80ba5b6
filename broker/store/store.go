// Package store is the broker's idempotent decision store: one durable row per
// signed request, keyed by the request's digest, holding the signed receipt
// exactly as it was produced.
//
// The store promises:
//
//   - Once: a digest is decided once. Save of a digest that is already stored
//     changes nothing and returns the stored decision, so a request redelivered
//     by Kafka re-emits the first receipt byte for byte, never a second answer.
//   - One answer per request id: at most one non-replay decision holds an
//     (agency, request id) pair; a different digest claiming it gets
//     ErrIDConflict and is not stored. Rejections of replayed ids (Replay) are
//     kept beside it.
//   - Durability before acknowledgement: Save returns nil only after the
//     transaction holding the decision committed (SQLite WAL with
//     synchronous=FULL, or PostgreSQL). Callers may publish the returned
//     receipt and commit their Kafka offset then, and not before.
//   - Group commit: concurrent Saves share transactions (up to
//     Options.BatchSize rows): a batch is what queued while the previous
//     transaction committed, and one conflicting or duplicate row never
//     fails the others in its batch.
//   - Append only: decisions are never updated or deleted; the PostgreSQL
//     role suggested by PostgresRoleSQL holds SELECT and INSERT on them only.
//   - Shared quotas: Take counts a use of an agreement's quota in the
//     calendar windows (Beijing time) of its limits, all windows or none, in
//     a transaction of its own beside the group commit. Every Store on one
//     database shares the counts, so brokers in one consumer group share one
//     budget, exact at the boundary under concurrency: of N concurrent Takes
//     from a budget with room for k, exactly min(N, k) succeed. Counters are
//     the only rows updated (UPDATE on quota_usage, nothing else); none is
//     deleted.
//
// Open picks the backend from the DSN: PostgreSQL for "postgres://" and
// "postgresql://" URLs, SQLite (pure Go, modernc.org/sqlite) for anything
// else.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certless/certless/fault"
)

// Outcomes of a decision.
const (
	Answered      = "answered"
	NotFound      = "not_found"
	Denied        = "denied"
	Rejected      = "rejected"
	Unavailable   = "unavailable"    // a transient failure outlasted its bounded retries
	InternalError = "internal_error" // a recovered panic: a bug, answered so nothing stalls
)

// Decision is the one decision made for one signed request.
type Decision struct {
	Digest    string    // "sha256:<64 lower-case hex>" of the signed request bytes; primary key
	Agency    string    // authenticated sender agency
	RequestID string    // payload id; may be "" only for a rejection (the id could not be read)
	QueryType string    // may be "" only for a rejection
	Outcome   string    // Answered, NotFound, Denied, Rejected, Unavailable or InternalError
	Reason    string    // stable reason code; "" when answered, required when denied or rejected
	Replay    bool      // a rejection of a replayed id: excluded from the id uniqueness
	Receipt   []byte    // the signed receipt exactly as produced
	DecidedAt time.Time // stored in UTC with microsecond precision
	// AgreementID, AgreementVersion and AgreementDigest cite the agreement
	// the decision rests on, as its receipt does; empty for none.
	AgreementID      string
	AgreementVersion int
	AgreementDigest  string
	// Type is the message type decided ("request", ...); may be "" only
	// for a rejection.
	Type string
	// ReceiptID and ReceiptDigest name the signed receipt (its payload id,
	// and the digest of the JWS — inside the JWE of a confidential
	// receipt — that the agency verifies and cites in feedback);
	// AnswerFields are the names (never the values) of the answer fields it
	// carries, which a dispute may name. Empty for decisions stored before
	// they were recorded.
	ReceiptID     string
	ReceiptDigest string
	AnswerFields  []string
	// StatusIndex is the receipt's index in the revocation status lists
	// (-1: none; the zero value is index 0). SubjectKey is a keyed digest of
	// the query type and subject, never the subject itself: the receipts
	// that carried an answer later corrected are found by it.
	StatusIndex int64
	SubjectKey  string
	// LatencyMicros is how long the decision took, from the request's
	// Kafka timestamp to DecidedAt, in microseconds (-1: not measured).
	LatencyMicros int64
	// Leaf is the transparency-log leaf of the decision, which Save builds
	// (the caller's value is ignored) and appends in the decision's own
	// transaction; LeafIndex is its index, -1 for a decision stored before
	// the log existed.
	Leaf      []byte
	LeafIndex int64
}

var (
	// ErrIDConflict is returned by Save when another non-replay decision
	// already holds (Agency, RequestID) with a different digest. Use errors.As
	// with *ConflictError to learn which digest holds it.
	ErrIDConflict = errors.New("request id already decided for another request")
	// ErrInvalid is wrapped by Save errors for a decision that cannot be
	// stored as given; retrying will not help (it is fault-permanent,
	// reason internal_error: the caller built a bad decision).
	ErrInvalid = fault.Permanent("internal_error", errors.New("invalid decision"))
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("decision store closed")
)

// ConflictError is the ErrIDConflict returned by Save, with what the caller
// needs to answer the replay.
type ConflictError struct {
	Agency, RequestID string
	Digest            string // the digest that was refused
	Held              string // the digest of the decision holding the id
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: %v: agency %q id %q is held by %s, refused %s", ErrIDConflict, e.Agency, e.RequestID, e.Held, e.Digest)
}

// Is makes errors.Is(err, ErrIDConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrIDConflict }

// Store is the durable, idempotent decision store, and the quota counter
// (Quotas) of the same database.
type Store interface {
	Quotas
	Log
	// Save stores d durably unless a decision with d.Digest exists, and
	// returns the decision that is stored: d itself (DecidedAt normalised) or,
	// for a known digest, the earlier decision, whatever d says. Callers
	// publish exactly what Save returns. Concurrent calls are grouped into one
	// transaction (see Options); Save returns only after its batch committed.
	//
	// Errors: ErrInvalid (wrapped) for bad input, ErrIDConflict (as
	// *ConflictError) when the id is held by another digest, ctx.Err() when
	// ctx ends first (d may or may not be stored then; a retry settles it),
	// ErrClosed after Close; anything else is transient.
	Save(ctx context.Context, d Decision) (Decision, error)
	// Get returns the decision stored for digest.
	Get(ctx context.Context, digest string) (Decision, bool, error)
	// DigestByRequestID returns the digest of the non-replay decision that
	// holds (agency, requestID).
	DigestByRequestID(ctx context.Context, agency, requestID string) (string, bool, error)
	// ByReceipt returns the decision whose receipt has id receiptID.
	ByReceipt(ctx context.Context, receiptID string) (Decision, bool, error)
	Status
	Rows
	Browse
	// Count returns the number of stored decisions, replays included.
	Count(ctx context.Context) (int, error)
	// Stats reports the group-commit counters since Open.
	Stats() Stats
	// Close stops accepting Saves and quota calls, commits every batch
	// already accepted, waits for it and for the quota calls under way, and
	// closes the database. It is safe to call twice.
	Close() error
}

// Stats are the group-commit counters of a Store, for tests and metrics.
type Stats struct {
	Batches int64 // transactions attempted
	Rows    int64 // Saves those transactions carried (conflicts and duplicates included)
	Queued  int64 // Saves accepted and waiting for their transaction now
}

// Options tune the group commit. The zero value is the default.
//
// One transaction commits at a time. A batch is flushed as soon as none is
// committing, and carries what queued meanwhile, up to BatchSize rows: under
// load, batches grow with the commit time; alone, a Save pays for one
// commit and no more.
type Options struct {
	// BatchSize is the most rows one transaction carries; default 256.
	BatchSize int
	// BatchWait, when positive, also holds a batch back, even with no
	// transaction committing, until its oldest Save has waited BatchWait or
	// BatchSize rows queued: fewer, larger transactions for that added
	// latency. Zero (the default) or negative: no deliberate wait.
	BatchWait time.Duration
}

const defaultBatchSize = 256

func (o Options) withDefaults() (Options, error) {
	if o.BatchSize < 0 {
		return o, fmt.Errorf("store: BatchSize %d is negative", o.BatchSize)
	}
	if o.BatchSize == 0 {
		o.BatchSize = defaultBatchSize
	}
	return o, nil
}

// Open opens (and creates or migrates if needed) the decision store at dsn.
// A "postgres://" or "postgresql://" URL selects PostgreSQL; anything else is
// a SQLite file path, a "file:" URI or ":memory:" (one private in-memory
// database per Open, for tests).
//
// Open creates the schema only when it is missing or older than this
// binary's, so a least-privilege role (see PostgresRoleSQL) can Open a store
// that Migrate prepared.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var b backend
	if isPostgres(dsn) {
		b, err = openPostgres(ctx, dsn)
	} else {
		b, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	return newGroup(b, opts), nil
}

// Migrate creates or upgrades the schema at dsn and returns. Run it as the
// owner role before starting brokers under a least-privilege role.
func Migrate(ctx context.Context, dsn string) error {
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		return err
	}
	return s.Close()
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// normalise checks d and returns the exact value that will be stored.
func normalise(d Decision) (Decision, error) {
	bad := func(format string, args ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("store: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !validDigest(d.Digest) {
		return bad("digest %q is not sha256:<64 lower-case hex>", d.Digest)
	}
	switch d.Outcome {
	case Answered:
		if d.Reason != "" {
			return bad("outcome answered with reason %q", d.Reason)
		}
	case NotFound:
	case Denied, Rejected, Unavailable, InternalError:
		if d.Reason == "" {
			return bad("outcome %s without a reason", d.Outcome)
		}
	default:
		return bad("unknown outcome %q", d.Outcome)
	}
	if d.Agency == "" {
		return bad("empty agency")
	}
	isQuery := d.Type == "" || d.Type == "verification_request"
	if (d.Outcome == Answered || d.Outcome == NotFound || d.Outcome == Denied) && (d.RequestID == "" || (isQuery && d.QueryType == "")) {
		return bad("outcome %s needs a request id and, for a request, a query type", d.Outcome)
	}
	if d.Replay && d.Outcome != Rejected {
		return bad("a replay must be rejected, not %s", d.Outcome)
	}
	if d.Replay && d.RequestID == "" {
		return bad("a replay needs the replayed request id")
	}
	for _, f := range []struct{ name, v string }{
		{"agency", d.Agency}, {"request id", d.RequestID}, {"query type", d.QueryType}, {"reason", d.Reason}, {"type", d.Type},
		{"receipt id", d.ReceiptID}, {"receipt digest", d.ReceiptDigest}, {"answer fields", strings.Join(d.AnswerFields, ",")},
		{"subject key", d.SubjectKey},
	} {
		// PostgreSQL text refuses both; refusing them here keeps one bad
		// row from failing a whole batch.
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return bad("%s is not NUL-free UTF-8", f.name)
		}
	}
	if len(d.Receipt) == 0 {
		return bad("empty receipt")
	}
	if (d.AgreementID == "") != (d.AgreementDigest == "") || (d.AgreementDigest != "" && !validDigest(d.AgreementDigest)) ||
		d.AgreementVersion < 0 || !utf8.ValidString(d.AgreementID) || strings.IndexByte(d.AgreementID, 0) >= 0 {
		return bad("agreement %q version %d digest %q is not a citation", d.AgreementID, d.AgreementVersion, d.AgreementDigest)
	}
	if d.DecidedAt.IsZero() {
		return bad("zero DecidedAt")
	}
	d.DecidedAt = d.DecidedAt.UTC().Truncate(time.Microsecond)
	// The caller may reuse its buffer once Save returns, even on ctx
	// cancellation while the row is still queued.
	d.Receipt = append([]byte(nil), d.Receipt...)
	leaf, err := decisionLeaf(d)
	if err != nil {
		return Decision{}, err
	}
	d.Leaf, d.LeafIndex = leaf, -1
	return d, nil
}

func validDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// splitFields reads the stored answer field list.
func splitFields(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
