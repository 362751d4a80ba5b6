package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// Reasons the pipeline itself gives, beside the envelope's reason codes,
// the authorisation denials and the permanent errors of the stages.
const (
	ReasonUnknownTopic     = "unknown_topic"
	ReasonTopicMismatch    = "topic_agency_mismatch"
	ReasonUnsupportedType  = "unsupported_type"
	ReasonNoJurisdiction   = "no_jurisdiction"
	ReasonNoRecord         = "no_record"
	ReasonInternal         = "internal_error"
	ReasonRetriesExhausted = "retries_exhausted"
)

// Verifier authenticates and validates a signed message. On failure it
// returns an error carrying an envelope.Reason; for reasons whose sender is
// authenticated it also returns the verified envelope, so the rejection can
// be receipted to that sender. Any other error is transient.
type Verifier interface {
	Verify(ctx context.Context, raw []byte) (*envelope.Verified, error)
}

// Decisions is the idempotent decision store as the pipeline uses it.
type Decisions interface {
	// Get returns the decision stored for a request digest.
	Get(ctx context.Context, digest string) (store.Decision, bool, error)
	// Save stores d unless its digest is stored and returns what is stored;
	// it returns store.ErrIDConflict when another message holds d's id.
	Save(ctx context.Context, d store.Decision) (store.Decision, error)
}

// Leaves appends transparency-log leaves that are not decisions' (dead
// letters); a decision's leaf is appended by Decisions.Save itself.
type Leaves interface {
	AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
}

// Gate says whether the record step may publish: it refuses while the
// transparency log has been unable to checkpoint for longer than its
// tolerance, so the broker stops answering rather than answer outside the
// log.
type Gate interface {
	Open() error
}

// HeaderLogIndex is the Kafka header carrying a record's leaf index in
// the transparency log, in decimal.
const HeaderLogIndex = "certless-log-index"

// Sealer signs a receipt payload with the broker's key and, when the
// receiving agency asks for it, encrypts it to that agency.
type Sealer interface {
	Seal(ctx context.Context, p envelope.Payload, to string) (Sealed, error)
}

// Sealed is a sealed receipt: the bytes to publish (a JWS, or a JWE around
// it) and the digest of the JWS, which the agency verifies and which
// feedback cites.
type Sealed struct {
	Bytes     []byte
	JWSDigest string
}

// Pipeline is the message-to-receipt chain. Its fields are its stages.
type Pipeline struct {
	Topics   Topics
	BrokerID string
	Verify   Verifier
	// Handlers decide the verified messages, by message type. A type with
	// no handler is rejected as unsupported_type.
	Handlers  map[string]TypeHandler
	Seal      Sealer
	Decisions Decisions
	// Leaves logs dead letters; nil logs none (unit tests).
	Leaves Leaves
	// Gate, when set, holds the record step while the log is failing.
	Gate Gate
	// Status, when set, gives every receipt its revocation status entry.
	Status *StatusAllocator
	// Log receives one warn line per dead letter: reason, kid, topic,
	// partition, offset, digest — never payload, names or ID numbers. Nil
	// logs nothing.
	Log *zap.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Handle implements Handler: one message in, its outputs out. It reads top
// to bottom: topic → redelivery → verify → dispatch by type → record.
func (p *Pipeline) Handle(ctx context.Context, m Message) (Result, error) {
	res, err := p.handle(ctx, m)
	return p.logDeadLetter(ctx, res, err)
}

func (p *Pipeline) handle(ctx context.Context, m Message) (Result, error) {
	v, res, done, err := p.begin(ctx, m)
	switch {
	case done || err != nil:
		return res, err
	case v.Refusal != nil:
		return p.record(ctx, m, *v.Refusal)
	}
	h, ok := p.Handlers[v.Type]
	if !ok {
		return p.record(ctx, m, rejected(v.Verified, "", ReasonUnsupportedType, v.Type+" is not accepted on a request topic"))
	}
	d, err := h.Decide(ctx, v.Verified)
	if err != nil {
		if !fault.IsPermanent(err) {
			return Result{}, fmt.Errorf("%s: %w", v.Type, err)
		}
		d = rejected(v.Verified, d.Query, fault.ReasonOf(err), err.Error())
	}
	d.Request = v.Verified
	return p.record(ctx, m, d)
}

// Fail ends a message whose handling could not complete: outcome
// unavailable (transient failures outlasted their bound; retryAfter is the
// hint) or internal_error (a stage panicked). The authenticated sender gets
// a signed receipt with that outcome — never a false not_found — and
// anyone else a dead letter, so nothing holds its partition. An error
// means even that could not be recorded (the decision store is down).
func (p *Pipeline) Fail(ctx context.Context, m Message, outcome, reason, detail string, retryAfter time.Duration) (Result, error) {
	res, err := p.fail(ctx, m, outcome, reason, detail, retryAfter)
	return p.logDeadLetter(ctx, res, err)
}

func (p *Pipeline) fail(ctx context.Context, m Message, outcome, reason, detail string, retryAfter time.Duration) (Result, error) {
	v, res, done, err := p.begin(ctx, m)
	switch {
	case done:
		return res, nil
	case errors.Is(err, errLookup):
		return Result{}, err // the store is down: nothing can be recorded
	case err != nil || v.Verified == nil:
		return p.deadLetter(m, "", reason, detail), nil
	}
	return p.record(ctx, m, Decision{
		Request: v.Verified, Query: queryOf(v.Verified), Outcome: outcome,
		Reason: reason, Detail: truncate(detail, 512), RetryAfter: retryAfter,
	})
}

// begin is what every message goes through first: its topic must be a
// request topic, a redelivery re-emits the stored receipt, and the sender
// must be authenticated as the topic's agency. done means res is the
// message's answer (a re-emit or a dead letter); otherwise v is the
// authenticated message, with Refusal set when it must be rejected
// unhandled. A transient verification error leaves v empty.
func (p *Pipeline) begin(ctx context.Context, m Message) (v authenticated, res Result, done bool, err error) {
	topicAgency, ok := p.Topics.AgencyOfRequests(m.Topic)
	if !ok {
		return v, p.deadLetter(m, "", ReasonUnknownTopic, "message on a topic that is not a request topic"), true, nil
	}
	if res, done, err := p.decided(ctx, m, topicAgency); done || err != nil {
		return v, res, done, err
	}
	return p.authenticate(ctx, m, topicAgency)
}

// errLookup wraps a failure to look up a message's stored decision.
var errLookup = errors.New("look up decision")

// decided re-emits the stored decision of a message already decided: the
// very same bytes, redelivered. The same bytes on another agency's request
// topic are not that agency's to re-emit: a dead letter.
func (p *Pipeline) decided(ctx context.Context, m Message, topicAgency string) (Result, bool, error) {
	d, found, err := p.Decisions.Get(ctx, Digest(m.Value))
	switch {
	case err != nil:
		return Result{}, false, fmt.Errorf("%w: %w", errLookup, err)
	case !found:
		return Result{}, false, nil
	case d.Agency != topicAgency:
		return p.deadLetter(m, topicAgency, ReasonTopicMismatch, "already decided for another agency's request"), true, nil
	}
	return p.reemit(d), true, nil
}

// authenticated is a message whose sender is authenticated and matches its
// topic; Refusal is set when it must be rejected without being handled.
type authenticated struct {
	*envelope.Verified
	Refusal *Decision
}

// authenticate verifies m. It returns the authenticated message, or (done)
// the dead letter of one whose sender is not authenticated or not the
// topic's agency, or a transient error.
func (p *Pipeline) authenticate(ctx context.Context, m Message, topicAgency string) (authenticated, Result, bool, error) {
	v, err := p.Verify.Verify(ctx, m.Value)
	if err == nil {
		if v.Agency != topicAgency {
			return authenticated{}, p.deadLetterKID(m, topicAgency, ReasonTopicMismatch, v.KeyID, "signed by "+v.Agency), true, nil
		}
		return authenticated{Verified: v}, Result{}, false, nil
	}
	reason := envelope.ReasonOf(err)
	var e *envelope.Error
	kid := ""
	if errors.As(err, &e) && e.Verified != nil {
		v, kid = e.Verified, e.Verified.KeyID
	}
	switch {
	case reason == "":
		return authenticated{}, Result{}, false, fmt.Errorf("verify: %w", err)
	case !reason.Authenticated() || v == nil:
		return authenticated{}, p.deadLetterKID(m, topicAgency, string(reason), kid, err.Error()), true, nil
	case v.Agency != topicAgency:
		return authenticated{}, p.deadLetterKID(m, topicAgency, ReasonTopicMismatch, kid, "signed by "+v.Agency), true, nil
	}
	r := rejected(v, queryOf(v), string(reason), detailOf(err))
	return authenticated{Verified: v, Refusal: &r}, Result{}, false, nil
}

// claimedKID is the kid the protected header of raw names, when it has the
// form of one ("<agency>/<key-id>"), for the dead-letter log: it says which
// key a refused message claims, not that it was signed with it.
func claimedKID(raw []byte) string {
	hdr, _, ok := bytes.Cut(raw, []byte{'.'})
	if !ok || len(hdr) > 4096 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(string(hdr))
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	if _, _, ok := keys.SplitKID(h.Kid); !ok {
		return ""
	}
	return h.Kid
}

// queryOf reads the query type of a verification request best effort, for
// receipts of messages that were not handled: only a known type counts.
func queryOf(v *envelope.Verified) string {
	if v == nil || v.Type != schemas.TypeVerificationRequest {
		return ""
	}
	var b struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Body, &b) != nil || !adapters.QueryType(b.Query).Valid() {
		return ""
	}
	return b.Query
}

// DeadLetter is the JSON value of a dead-letter record. It carries the
// original bytes only when they are within the size limit.
type DeadLetter struct {
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail,omitempty"`
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Digest     string    `json:"digest"`
	Size       int       `json:"size"`
	ReceivedAt time.Time `json:"received_at"`
	Message    []byte    `json:"message,omitempty"`
	// KID is the key id the message was verified with or names, when it
	// names a well-formed one.
	KID string `json:"kid,omitempty"`
}

// maxDeadLetterCopy bounds how much of an unauthenticated message is copied.
const maxDeadLetterCopy = 256 << 10

func (p *Pipeline) deadLetter(m Message, agency, reason, detail string) Result {
	return p.deadLetterKID(m, agency, reason, "", detail)
}

// deadLetterKID builds the dead-letter record of m and logs it once, at
// warn, with routing facts only.
func (p *Pipeline) deadLetterKID(m Message, agency, reason, kid, detail string) Result {
	dl := DeadLetter{
		Reason: reason, Detail: truncate(detail, 512), Topic: m.Topic, Partition: m.Partition,
		Offset: m.Offset, Digest: Digest(m.Value), Size: len(m.Value), ReceivedAt: p.now(),
	}
	if len(m.Value) <= maxDeadLetterCopy {
		dl.Message = m.Value
	}
	if kid == "" {
		kid = claimedKID(m.Value)
	}
	dl.KID = kid
	if p.Log != nil {
		p.Log.Warn("dead letter", zap.String("reason", reason), zap.String("kid", kid),
			zap.String("topic", m.Topic), zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset),
			zap.String("digest", dl.Digest))
	}
	b, _ := json.Marshal(dl) // plain struct: cannot fail
	res := Result{
		Outputs: []Output{{Topic: p.Topics.DeadLetter(), Key: []byte(dl.Digest), Value: b,
			Headers: map[string]string{"certless-reason": reason}}},
		Agency: agency, Outcome: OutcomeDeadLetter, Reason: reason,
	}
	leaf, err := translog.Leaf{
		Kind: translog.KindDeadLetter, Time: translog.FormatTime(dl.ReceivedAt), Agency: translog.Token(agency),
		Outcome: OutcomeDeadLetter, Reason: translog.Token(reason), Request: dl.Digest, Receipt: translog.Digest(b),
	}.Marshal()
	if err == nil { // every member is a token or a digest: it cannot fail
		res.logEntry = &logEntry{key: fmt.Sprintf("dead_letter:%s:%d:%d", m.Topic, m.Partition, m.Offset), leaf: leaf}
	}
	return res
}

// logDeadLetter appends the leaf of a dead letter before it is published;
// the record carries its index. A failure to append is transient: the
// message is retried, never published unlogged.
func (p *Pipeline) logDeadLetter(ctx context.Context, res Result, err error) (Result, error) {
	e := res.logEntry
	if err != nil || e == nil || p.Leaves == nil {
		return res, err
	}
	res.logEntry = nil
	if p.Gate != nil {
		if err := p.Gate.Open(); err != nil {
			return Result{}, err
		}
	}
	idx, err := p.Leaves.AppendLeaf(ctx, e.key, e.leaf)
	if err != nil {
		return Result{}, fmt.Errorf("log dead letter: %w", err)
	}
	for i := range res.Outputs {
		res.Outputs[i].Headers[HeaderLogIndex] = strconv.FormatInt(idx, 10)
	}
	return res, nil
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

// Digest is the request digest receipts cite: "sha256:" and the hex SHA-256
// of the signed bytes as received.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func detailOf(err error) string {
	var e *envelope.Error
	if errors.As(err, &e) {
		if e.Pointer != "" {
			return truncate(e.Pointer+": "+e.Detail, 512)
		}
		return truncate(e.Detail, 512)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

var _ Handler = (*Pipeline)(nil)

// LogDeadLetters logs a dead letter that was built outside Handle and Fail
// (the Recover middleware's answer of last resort) before it is published,
// like every other. Place it inside the metrics middleware and outside
// Recover. A dead letter Handle or Fail already logged passes unchanged.
func (p *Pipeline) LogDeadLetters() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			res, err := next.Handle(ctx, m)
			return p.logDeadLetter(ctx, res, err)
		})
	}
}
