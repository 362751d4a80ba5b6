package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// signBody signs a verification request with an arbitrary body, for the
// requests client.Build would not make.
func (f *fixture) signBody(t *testing.T, key *keys.Private, body string) []byte {
	t.Helper()
	s := f.sign(t, key, "identity", schemas.Subject{IDNumber: f.ds.Persons[0].IDNumber, Name: f.ds.Persons[0].Name}, f.now)
	parts := strings.Split(string(s.Bytes), ".")
	raw, err := b64(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var pl envelope.Payload
	if err := json.Unmarshal(raw, &pl); err != nil {
		t.Fatal(err)
	}
	pl.Body = json.RawMessage(body)
	out, err := envelope.Sign(key, pl)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subjectJSON(p records.Person) string {
	b, _ := json.Marshal(schemas.Subject{IDNumber: p.IDNumber, Name: p.Name})
	return string(b)
}

// TestPermanentTriggersAreRejectedAtOnce: each ordinary signed request the
// review found retried forever now gets one signed rejection, from one
// Handle call, with a stable reason.
func TestPermanentTriggersAreRejectedAtOnce(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	court, notary := f.topics.Requests("court-changchun"), f.topics.Requests("notary-dunhua")
	future := f.now.Add(time.Hour).Format(time.RFC3339)
	cases := []struct {
		name, topic string
		key         *keys.Private
		body        string
		reason      string
		detail      string
	}{
		{"kinship with oneself", notary, f.notary,
			`{"query":"kinship","subject":` + subjectJSON(p) + `,"related_subject":` + subjectJSON(p) + `}`,
			adapters.ReasonInvalidQuery, "/body/related_subject"},
		{"as_of in the future", court, f.court,
			`{"query":"identity","subject":` + subjectJSON(p) + `,"as_of":"` + future + `"}`,
			adapters.ReasonInvalidQuery, "/body/as_of"},
		{"as_of before the floor", court, f.court,
			`{"query":"identity","subject":` + subjectJSON(p) + `,"as_of":"1970-01-01T00:00:00Z"}`,
			adapters.ReasonInvalidQuery, "/body/as_of"},
		// The instant of Go's zero time.Time, in any zone: asked for, not
		// "now" (the hostile catalogue found it answered as of now).
		{"as_of the year 1", court, f.court,
			`{"query":"identity","subject":` + subjectJSON(p) + `,"as_of":"0001-01-01T00:00:00Z"}`,
			adapters.ReasonInvalidQuery, "/body/as_of"},
		{"as_of the year 1, another zone", court, f.court,
			`{"query":"identity","subject":` + subjectJSON(p) + `,"as_of":"0001-01-01T08:00:00+08:00"}`,
			adapters.ReasonInvalidQuery, "/body/as_of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := f.signBody(t, c.key, c.body)
			agency := strings.TrimSuffix(strings.TrimPrefix(c.topic, "test."), ".requests")
			r := f.receipt(t, f.handle(t, c.topic, raw), agency)
			if r.Decision != schemas.DecisionRejected || r.Reason != c.reason || !strings.Contains(r.Detail, c.detail) {
				t.Fatalf("got %s/%s %q, want rejected/%s naming %s", r.Decision, r.Reason, r.Detail, c.reason, c.detail)
			}
			if r.RequestDigest != broker.Digest(raw) {
				t.Fatal("rejection does not cite the request")
			}
		})
	}
}

// TestRegionOutsideTheTableIsAnswered: a person whose residence lies
// outside the embedded region table is answered with the code and no name,
// in a receipt that keeps its schema.
func TestRegionOutsideTheTableIsAnswered(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(p records.Person) bool { return true })
	f.ds.Residences = append(f.ds.Residences, records.Residence{
		PersonID: p.IDNumber, RegionCode: "110101", From: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), Seq: 99,
	})
	router := broker.NewRouter()
	router.Add("220000", "jilin", records.NewSource("jilin", records.NewMemory(f.ds), nil))
	f.requests.Records = router
	s := f.sign(t, f.court, "residence", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	r := f.receipt(t, f.handle(t, f.topics.Requests("court-changchun"), s.Bytes), "court-changchun")
	if r.Decision != schemas.DecisionAnswered {
		t.Fatalf("got %s/%s %q", r.Decision, r.Reason, r.Detail)
	}
	ans, _ := r.Answer()
	found := false
	for _, e := range ans["residences"].([]any) {
		m := e.(map[string]any)
		if m["region_code"] == "110101" {
			found = true
			if _, ok := m["region_name"]; ok {
				t.Errorf("a code outside the table got a name: %v", m)
			}
		}
	}
	if !found {
		t.Fatalf("the residence outside the table is missing: %v", ans)
	}
}

// TestHTTPSourceFailuresAreAnswered drives the pipeline against an HTTP
// record source that refuses, answers with an unexpected member, or
// returns fields nobody documented.
func TestHTTPSourceFailuresAreAnswered(t *testing.T) {
	var mode atomic.Value
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asOf := time.Now().UTC().Format(time.RFC3339)
		switch mode.Load().(string) {
		case "403":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"certificate not allowed"}`))
		case "unexpected member":
			_, _ = w.Write([]byte(`{"found":true,"fields":{"as_of":"` + asOf + `"},"as_of":"` + asOf + `","valid_until":"2099-01-01T00:00:00Z","source":"x","ethnicity":"x"}`))
		case "undocumented field":
			_, _ = w.Write([]byte(`{"found":true,"fields":{"as_of":"` + asOf + `","id_name_match":true,"status":"active","ethnicity":"汉"},"as_of":"` + asOf + `","valid_until":"2099-01-01T00:00:00Z","source":"x"}`))
		case "field of the wrong shape":
			_, _ = w.Write([]byte(`{"found":true,"fields":{"as_of":"` + asOf + `","id_name_match":true,"status":"maybe"},"as_of":"` + asOf + `","valid_until":"2099-01-01T00:00:00Z","source":"x"}`))
		}
	}))
	defer upstream.Close()
	src, err := httpsource.New(upstream.URL, httpsource.Options{Name: "upstream", MaxAttempts: 1, TripAfter: 100})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	router := broker.NewRouter()
	router.Add("220000", "upstream", src)
	f.requests.Records = router
	p := f.person(t, func(records.Person) bool { return true })
	for _, c := range []struct {
		mode, decision, reason string
	}{
		{"403", schemas.DecisionRejected, adapters.ReasonSourceRefused},
		{"unexpected member", schemas.DecisionRejected, adapters.ReasonAnswerInvalid},
		{"field of the wrong shape", schemas.DecisionRejected, adapters.ReasonAnswerInvalid},
		{"undocumented field", schemas.DecisionAnswered, ""},
	} {
		t.Run(c.mode, func(t *testing.T) {
			mode.Store(c.mode)
			s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
			r := f.receipt(t, f.handle(t, f.topics.Requests("court-changchun"), s.Bytes), "court-changchun")
			if r.Decision != c.decision || r.Reason != c.reason {
				t.Fatalf("got %s/%s %q, want %s/%s", r.Decision, r.Reason, r.Detail, c.decision, c.reason)
			}
			if ans, _ := r.Answer(); ans["ethnicity"] != nil {
				t.Fatalf("an undocumented field reached the receipt: %v", ans)
			}
		})
	}
}

// TestNameMismatchIsNotFound: an identity query whose ID exists under
// another name is answered exactly like one for an unknown ID, unless the
// authorisation allows the mismatch answer.
func TestNameMismatchIsNotFound(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	court := f.topics.Requests("court-changchun")
	mismatch := f.receipt(t, f.handle(t, court, f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name + "伟"}, f.now).Bytes), "court-changchun")
	if mismatch.Decision != schemas.DecisionNotFound || mismatch.Reason != broker.ReasonNoRecord || len(mismatch.Receipt.Answer) != 0 {
		t.Fatalf("mismatch: %s/%s answer %s", mismatch.Decision, mismatch.Reason, mismatch.Receipt.Answer)
	}
	allowed := f.receipt(t, f.handle(t, f.topics.Requests("notary-dunhua"), f.sign(t, f.notary, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name + "伟"}, f.now).Bytes), "notary-dunhua")
	ans, _ := allowed.Answer()
	if allowed.Decision != schemas.DecisionAnswered || ans["id_name_match"] != false {
		t.Fatalf("mismatch answer allowed: %s/%s %v", allowed.Decision, allowed.Reason, ans)
	}
}

// failingSource fails every call with err, counting calls; panics when
// err is nil.
type failingSource struct {
	err   error
	calls atomic.Int64
}

func (s *failingSource) Answer(context.Context, adapters.Query) (adapters.Answer, error) {
	s.calls.Add(1)
	if s.err == nil {
		panic("source bug")
	}
	return adapters.Answer{}, s.err
}

// chain wraps f's pipeline as the service does.
func (f *fixture) chain(policy broker.RetryPolicy, log *zap.Logger) broker.Handler {
	exhausted := func(ctx context.Context, m broker.Message, attempts int, err error) (broker.Result, error) {
		return f.p.Fail(ctx, m, schemas.DecisionUnavailable, broker.ReasonRetriesExhausted, "retries ran out", 45*time.Second)
	}
	panicked := func(ctx context.Context, m broker.Message) (broker.Result, error) {
		return f.p.Fail(ctx, m, schemas.DecisionInternalError, broker.ReasonInternal, "bug", 0)
	}
	return broker.Chain(f.p, broker.Retry(policy, exhausted, log, nil), broker.Recover(f.topics, panicked, log))
}

// TestTransientFailuresAreBounded: a source that never recovers costs
// exactly MaxAttempts attempts, then the sender gets a signed unavailable
// receipt with the retry hint — never a false not_found — and a
// redelivery re-emits it.
func TestTransientFailuresAreBounded(t *testing.T) {
	f := newFixture(t)
	src := &failingSource{err: fmt.Errorf("connect: %w", adapters.ErrUnavailable)}
	router := broker.NewRouter()
	router.Add("220000", "down", src)
	f.requests.Records = router
	core, logs := observer.New(zap.WarnLevel)
	h := f.chain(broker.RetryPolicy{MaxAttempts: 3, Window: time.Minute, BackoffMin: time.Millisecond}, zap.New(core))
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	m := broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes}
	res, err := h.Handle(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	r := f.receipt(t, res, "court-changchun")
	if r.Decision != schemas.DecisionUnavailable || r.Reason != broker.ReasonRetriesExhausted || r.RetryAfter != 45 {
		t.Fatalf("got %s/%s retry_after %d", r.Decision, r.Reason, r.RetryAfter)
	}
	if n := src.calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if n := logs.FilterMessage("message handling failed").Len(); n != 3 {
		t.Errorf("%d failed-attempt log lines, want one per attempt (3)", n)
	}
	again, err := h.Handle(context.Background(), m)
	if err != nil || string(again.Outputs[0].Value) != string(res.Outputs[0].Value) || src.calls.Load() != 3 {
		t.Fatalf("redelivery: %v, calls %d", err, src.calls.Load())
	}
}

// TestRetryWindowBoundsTime: with attempts to spare, the window alone ends
// the retries.
func TestRetryWindowBoundsTime(t *testing.T) {
	var attempts atomic.Int64
	h := broker.Retry(broker.RetryPolicy{MaxAttempts: 1000, Window: 50 * time.Millisecond, BackoffMin: 5 * time.Millisecond, BackoffMax: 5 * time.Millisecond},
		func(ctx context.Context, m broker.Message, n int, err error) (broker.Result, error) {
			return broker.Result{Outcome: "gave up"}, nil
		}, nil, nil)(broker.HandlerFunc(func(context.Context, broker.Message) (broker.Result, error) {
		attempts.Add(1)
		return broker.Result{}, errors.New("down")
	}))
	res, err := h.Handle(context.Background(), broker.Message{})
	if err != nil || res.Outcome != "gave up" {
		t.Fatalf("%+v %v", res, err)
	}
	if n := attempts.Load(); n < 2 || n > 11 {
		t.Fatalf("%d attempts in a 50ms window with 5ms backoff", n)
	}
}

// TestPermanentErrorIsNotRetried: a permanent error that reaches Retry
// goes to the fallback after one attempt.
func TestPermanentErrorIsNotRetried(t *testing.T) {
	var attempts atomic.Int64
	var gotErr error
	h := broker.Retry(broker.RetryPolicy{MaxAttempts: 5}, func(ctx context.Context, m broker.Message, n int, err error) (broker.Result, error) {
		gotErr = err
		return broker.Result{Outcome: "answered by fallback"}, nil
	}, nil, nil)(broker.HandlerFunc(func(context.Context, broker.Message) (broker.Result, error) {
		attempts.Add(1)
		return broker.Result{}, fault.Permanentf("invalid_query", "never")
	}))
	if _, err := h.Handle(context.Background(), broker.Message{}); err != nil || attempts.Load() != 1 || fault.ReasonOf(gotErr) != "invalid_query" {
		t.Fatalf("attempts %d, err %v, fallback saw %v", attempts.Load(), err, gotErr)
	}
}

// TestPanicIsAnsweredInternalError: a panicking source gets the
// authenticated sender a signed internal_error receipt at once (a panic is
// not retried); an unauthenticated message that panics is a dead letter.
func TestPanicIsAnsweredInternalError(t *testing.T) {
	f := newFixture(t)
	src := &failingSource{}
	router := broker.NewRouter()
	router.Add("220000", "buggy", src)
	f.requests.Records = router
	h := f.chain(broker.RetryPolicy{MaxAttempts: 3, BackoffMin: time.Millisecond}, zap.NewNop())
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	res, err := h.Handle(context.Background(), broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes})
	if err != nil {
		t.Fatal(err)
	}
	r := f.receipt(t, res, "court-changchun")
	if r.Decision != schemas.DecisionInternalError || r.Reason != broker.ReasonInternal || res.Outcome != schemas.DecisionInternalError {
		t.Fatalf("got %s/%s (%s)", r.Decision, r.Reason, res.Outcome)
	}
	if src.calls.Load() != 1 {
		t.Fatalf("a panic was retried: %d calls", src.calls.Load())
	}

	panicking := broker.Chain(broker.HandlerFunc(func(context.Context, broker.Message) (broker.Result, error) { panic("bug") }),
		broker.Recover(f.topics, func(ctx context.Context, m broker.Message) (broker.Result, error) {
			return f.p.Fail(ctx, m, schemas.DecisionInternalError, broker.ReasonInternal, "bug", 0)
		}, zap.NewNop()))
	dl, err := panicking.Handle(context.Background(), broker.Message{Topic: f.topics.Requests("court-changchun"), Value: []byte("not a jws")})
	if err != nil || dl.Outcome != broker.OutcomeDeadLetter || dl.Outputs[0].Topic != f.topics.DeadLetter() {
		t.Fatalf("unauthenticated panic: %+v %v", dl, err)
	}
	// When even answering panics, the message is still a dead letter.
	worst := broker.Chain(broker.HandlerFunc(func(context.Context, broker.Message) (broker.Result, error) { panic("bug") }),
		broker.Recover(f.topics, func(context.Context, broker.Message) (broker.Result, error) { panic("worse") }, zap.NewNop()))
	dl, err = worst.Handle(context.Background(), broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes})
	if err != nil || dl.Outcome != broker.OutcomeDeadLetter || dl.Reason != broker.ReasonInternal {
		t.Fatalf("double panic: %+v %v", dl, err)
	}
}

// TestCrossTopicRedeliveryIsDeadLettered: bytes already decided for one
// agency, arriving on another agency's request topic, are not re-emitted
// to that agency.
func TestCrossTopicRedeliveryIsDeadLettered(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	f.handle(t, f.topics.Requests("court-changchun"), s.Bytes)
	res := f.handle(t, f.topics.Requests("notary-dunhua"), s.Bytes)
	if res.Outcome != broker.OutcomeDeadLetter || res.Reason != broker.ReasonTopicMismatch || res.Outputs[0].Topic != f.topics.DeadLetter() {
		t.Fatalf("cross-topic redelivery: %+v", res)
	}
}

// TestReceiptNeverOutlivesItsAnswer: expires_at is at most valid_until.
func TestReceiptNeverOutlivesItsAnswer(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	for _, q := range []string{"criminal_record", "identity"} {
		s := f.sign(t, f.court, q, schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
		r := f.receipt(t, f.handle(t, f.topics.Requests("court-changchun"), s.Bytes), "court-changchun")
		if r.ValidUntil == nil || r.Envelope.ExpiresAt.After(*r.ValidUntil) || !r.Envelope.ExpiresAt.After(f.now) {
			t.Fatalf("%s: expires %v, valid until %v", q, r.Envelope.ExpiresAt, r.ValidUntil)
		}
	}
}

// TestConfidentialWithoutKeyIsDeadLettered: a receipt that must be
// encrypted and cannot be is never sent in clear, nor retried.
func TestConfidentialWithoutKeyIsDeadLettered(t *testing.T) {
	f := newFixture(t)
	sealer := f.p.Seal.(*broker.ReceiptSealer)
	reg, err := keys.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	sealer.Confidential, sealer.Encryption = func(a string) bool { return a == "court-changchun" }, reg
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	res := f.handle(t, f.topics.Requests("court-changchun"), s.Bytes)
	if res.Outcome != broker.OutcomeDeadLetter || res.Reason != broker.ReasonNoEncryptionKey {
		t.Fatalf("got %+v", res)
	}
	if _, err := client.VerifyReceipt(res.Outputs[0].Value, f.brokerKeys, client.Expect{Now: f.now}); err == nil {
		t.Fatal("a receipt left in clear")
	}
}

// downStore is a decision store that cannot be reached.
type downStore struct{}

func (downStore) Get(context.Context, string) (store.Decision, bool, error) {
	return store.Decision{}, false, errors.New("connection refused")
}
func (downStore) Save(context.Context, store.Decision) (store.Decision, error) {
	return store.Decision{}, errors.New("connection refused")
}

// TestStoreDownIsNotAnswered: with the decision store down nothing can be
// recorded, so nothing is published — no receipt whose decision is not
// durable — and the error reaches the runner, which retries the message
// uncommitted.
func TestStoreDownIsNotAnswered(t *testing.T) {
	f := newFixture(t)
	f.p.Decisions = downStore{}
	h := f.chain(broker.RetryPolicy{MaxAttempts: 2, BackoffMin: time.Millisecond}, zap.NewNop())
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	res, err := h.Handle(context.Background(), broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes})
	if err == nil || len(res.Outputs) != 0 {
		t.Fatalf("store down: %+v %v, want an error and nothing to publish", res, err)
	}
}

// TestDecisionStoresItsAgreement: the stored decision cites the agreement
// its receipt cites.
func TestDecisionStoresItsAgreement(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	r := f.receipt(t, f.handle(t, f.topics.Requests("court-changchun"), s.Bytes), "court-changchun")
	d, ok, err := f.store.Get(context.Background(), s.Digest)
	if !ok || err != nil || r.Agreement == nil {
		t.Fatalf("stored %v %v, receipt agreement %v", ok, err, r.Agreement)
	}
	if d.AgreementID != r.Agreement.ID || d.AgreementDigest != r.Agreement.Digest || d.AgreementVersion != r.Agreement.Version {
		t.Fatalf("stored %s v%d %s, receipt cites %+v", d.AgreementID, d.AgreementVersion, d.AgreementDigest, r.Agreement)
	}
}

// TestRevokedBrokerKeySignsNothing: with its signing key revoked and no
// newer one, the broker stores and publishes no receipt every verifier
// would refuse; the failure is transient (waiting for the rotated key).
func TestRevokedBrokerKeySignsNothing(t *testing.T) {
	f := newFixture(t)
	sealer := f.p.Seal.(*broker.ReceiptSealer)
	k := *sealer.Keys.SigningKey()
	k.RevokedAt = f.now.Add(-time.Minute)
	sealer.Keys, sealer.Now = broker.StaticKey{Key: &k}, func() time.Time { return f.now }
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	res, err := f.p.Handle(context.Background(), broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes})
	if err == nil || fault.IsPermanent(err) || len(res.Outputs) != 0 {
		t.Fatalf("got %+v %v, want a transient error and nothing to publish", res, err)
	}
	if n, _ := f.store.Count(context.Background()); n != 0 {
		t.Fatalf("%d decisions stored with a revoked key", n)
	}
}
