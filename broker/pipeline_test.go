package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
	"github.com/certless/certless/translog"
)

type fixture struct {
	p          *broker.Pipeline
	requests   *broker.RequestHandler
	router     *broker.Router
	topics     broker.Topics
	court      *keys.Private
	notary     *keys.Private
	brokerKeys *client.Broker
	ds         *records.Dataset
	now        time.Time
	store      store.Store
}

func newFixture(t testing.TB) *fixture { return newFixtureWithStore(t, ":memory:") }

// newFixtureWithStore builds the pipeline with real parts, as `certless
// dev` composes it: EdDSA keys, the envelope verifier with the decision
// store at dsn as replay index, synthetic records in memory and the receipt
// sealer. Its clock stands still at f.now.
func newFixtureWithStore(t testing.TB, dsn string) *fixture {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	mustKey := func(agency string) *keys.Private {
		k, err := keys.Generate(agency, "k1", keys.EdDSA)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	f := &fixture{topics: broker.Topics{Prefix: "test."}, now: now,
		court: mustKey("court-changchun"), notary: mustKey("notary-dunhua")}
	bk := mustKey("certless")
	agencyKeys, err := keys.NewRegistry(f.court.Public, f.notary.Public)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := keys.MarshalJWKS([]keys.Public{bk.Public})
	if err != nil {
		t.Fatal(err)
	}
	if f.brokerKeys, err = client.BrokerKeys("certless", jwks); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.store = st
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	f.ds = records.Generate(7, 2000)
	router := broker.NewRouter()
	router.Add("220000", "jilin", records.NewSource("jilin", records.NewMemory(f.ds), nil))
	clock := func() time.Time { return f.now }
	f.router = router
	f.requests = &broker.RequestHandler{
		Auth: broker.NewAllowList([]config.Agency{
			{ID: "court-changchun", Allow: []config.Allow{
				{Query: "criminal_record", Fields: []string{"has_criminal_record", "as_of"}}, {Query: "identity"}, {Query: "residence"}, {Query: "household"}}},
			{ID: "notary-dunhua", Allow: []config.Allow{{Query: "kinship"}, {Query: "identity", AnswerMismatch: true}}},
		}),
		Records: router,
		Now:     clock,
	}
	f.p = &broker.Pipeline{
		Topics: f.topics, BrokerID: "certless",
		Verify:    &envelope.Verifier{Keys: agencyKeys, Schemas: set, Now: clock},
		Handlers:  map[string]broker.TypeHandler{schemas.TypeVerificationRequest: f.requests},
		Seal:      &broker.ReceiptSealer{Keys: broker.StaticKey{Key: bk}, Schemas: set},
		Decisions: st,
		Leaves:    st,
		Now:       clock,
	}
	return f
}

func (f *fixture) person(t *testing.T, pred func(records.Person) bool) records.Person {
	t.Helper()
	for _, p := range f.ds.Persons {
		if p.CancelReason == "" && pred(p) {
			return p
		}
	}
	t.Fatal("no person matches")
	return records.Person{}
}

func (f *fixture) sign(t *testing.T, key *keys.Private, query string, subj schemas.Subject, issued time.Time) client.Signed {
	t.Helper()
	s, err := client.Build(key, client.Request{Query: query, Subject: subj, Basis: "criminal-proceedings", CaseRef: "(2026)JL01-123"}, issued)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) handle(t *testing.T, topic string, value []byte) broker.Result {
	t.Helper()
	return f.handleAt(t, topic, value, 0)
}

// handleAt is handle for the record at offset.
func (f *fixture) handleAt(t *testing.T, topic string, value []byte, offset int64) broker.Result {
	t.Helper()
	res, err := f.p.Handle(context.Background(), broker.Message{Topic: topic, Value: value, Offset: offset})
	if err != nil {
		t.Fatalf("Handle returned a transient error: %v", err)
	}
	if len(res.Outputs) != 1 {
		t.Fatalf("want exactly one output, got %d", len(res.Outputs))
	}
	return res
}

func (f *fixture) receipt(t *testing.T, res broker.Result, agency string) *client.Receipt {
	t.Helper()
	out := res.Outputs[0]
	if out.Topic != f.topics.Receipts(agency) {
		t.Fatalf("receipt went to %s, want %s", out.Topic, f.topics.Receipts(agency))
	}
	r, err := client.VerifyReceipt(out.Value, f.brokerKeys, client.Expect{Now: f.now, RequestAgency: agency})
	if err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	return r
}

func TestPipelineDecisions(t *testing.T) {
	f := newFixture(t)
	courtTopic := f.topics.Requests("court-changchun")
	clean := f.person(t, func(p records.Person) bool { return true })
	unknownID := residentid.Make("220582", time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), 997)

	cases := []struct {
		name              string
		key               *keys.Private
		query             string
		subject           schemas.Subject
		issued            time.Time
		decision, reason  string
		wantAnswerFields  []string
		forbiddenInAnswer []string
	}{
		{"answered and minimised", f.court, "criminal_record", schemas.Subject{IDNumber: clean.IDNumber, Name: clean.Name}, f.now,
			schemas.DecisionAnswered, "", []string{"has_criminal_record", "as_of"}, []string{"records"}},
		{"not found", f.court, "identity", schemas.Subject{IDNumber: unknownID, Name: "王伟"}, f.now,
			schemas.DecisionNotFound, broker.ReasonNoRecord, nil, nil},
		{"denied", f.court, "former_names", schemas.Subject{IDNumber: clean.IDNumber, Name: clean.Name}, f.now,
			schemas.DecisionDenied, broker.ReasonQueryNotAllowed, nil, nil},
		{"expired", f.court, "identity", schemas.Subject{IDNumber: clean.IDNumber, Name: clean.Name}, f.now.Add(-time.Hour),
			schemas.DecisionRejected, string(envelope.ReasonExpired), nil, nil},
		{"schema violation", f.court, "identity", schemas.Subject{IDNumber: clean.IDNumber[:17] + "0", Name: clean.Name}, f.now,
			schemas.DecisionRejected, string(envelope.ReasonSchemaViolation), nil, nil},
	}
	if clean.IDNumber[17] == '0' {
		cases[4].subject.IDNumber = clean.IDNumber[:17] + "1"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := f.sign(t, tc.key, tc.query, tc.subject, tc.issued)
			res := f.handle(t, courtTopic, s.Bytes)
			r := f.receipt(t, res, "court-changchun")
			if r.Decision != tc.decision || r.Reason != tc.reason {
				t.Fatalf("decision %s/%s, want %s/%s (detail %q)", r.Decision, r.Reason, tc.decision, tc.reason, r.Detail)
			}
			if r.RequestDigest != s.Digest || r.RequestID != s.ID {
				t.Fatal("receipt does not cite the request")
			}
			if res.Outcome != tc.decision || res.Redelivery {
				t.Fatalf("result summary %+v", res)
			}
			ans, err := r.Answer()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.wantAnswerFields {
				if _, ok := ans[k]; !ok {
					t.Errorf("answer lacks %s: %v", k, ans)
				}
			}
			for _, k := range tc.forbiddenInAnswer {
				if _, ok := ans[k]; ok {
					t.Errorf("answer carries %s, which the allow-list withholds", k)
				}
			}
			if tc.decision == schemas.DecisionAnswered && (r.Agreement == nil || r.Agreement.Digest == "") {
				t.Error("answer does not cite its authorisation")
			}
			if tc.reason == string(envelope.ReasonSchemaViolation) && !strings.Contains(r.Detail, "/body/subject/id_number") {
				t.Errorf("schema violation detail %q does not point at the field", r.Detail)
			}
			if tc.decision != schemas.DecisionAnswered && len(r.Receipt.Answer) != 0 {
				t.Error("a refusal must not carry an answer")
			}
		})
	}
}

func TestPipelineRedeliveryReemitsStoredReceipt(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	topic := f.topics.Requests("court-changchun")
	first := f.handle(t, topic, s.Bytes)
	f.now = f.now.Add(2 * time.Hour) // even after the request expired
	second := f.handle(t, topic, s.Bytes)
	if string(first.Outputs[0].Value) != string(second.Outputs[0].Value) {
		t.Fatal("redelivered request got a different receipt")
	}
	if !second.Redelivery || first.Redelivery {
		t.Fatalf("redelivery flags: first %v second %v", first.Redelivery, second.Redelivery)
	}
	if n, _ := f.store.Count(context.Background()); n != 1 {
		t.Fatalf("store holds %d decisions, want 1", n)
	}
}

func TestPipelineReplayedIDIsRejected(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	topic := f.topics.Requests("court-changchun")
	f.handle(t, topic, s.Bytes)

	// Same id, other content: re-sign a modified payload under the same id.
	var pl envelope.Payload
	parts := strings.Split(string(s.Bytes), ".")
	raw, err := b64(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &pl); err != nil {
		t.Fatal(err)
	}
	pl.Body = json.RawMessage(`{"query":"criminal_record","subject":{"id_number":"` + p.IDNumber + `","name":"` + p.Name + `"}}`)
	other, err := envelope.Sign(f.court, pl)
	if err != nil {
		t.Fatal(err)
	}
	res := f.handle(t, topic, other)
	r := f.receipt(t, res, "court-changchun")
	if r.Decision != schemas.DecisionRejected || r.Reason != string(envelope.ReasonReplay) {
		t.Fatalf("replay got %s/%s", r.Decision, r.Reason)
	}
	// The replay's own redelivery re-emits the same rejection.
	again := f.handle(t, topic, other)
	if string(again.Outputs[0].Value) != string(res.Outputs[0].Value) {
		t.Fatal("replay rejection not idempotent")
	}
}

func TestPipelineDeadLetters(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	subj := schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}
	good := f.sign(t, f.court, "identity", subj, f.now)
	tampered := []byte(strings.Replace(string(good.Bytes), ".", ".e", 1))
	cases := []struct {
		name, topic string
		value       []byte
		reason      string
	}{
		{"bad signature", f.topics.Requests("court-changchun"), append(append([]byte{}, good.Bytes[:len(good.Bytes)-4]...), []byte("AAAA")...), string(envelope.ReasonSignatureInvalid)},
		{"unknown key", f.topics.Requests("court-changchun"), f.sign(t, mustOther(t), "identity", subj, f.now).Bytes, string(envelope.ReasonUnknownKey)},
		{"malformed", f.topics.Requests("court-changchun"), []byte("not a jws"), string(envelope.ReasonMalformed)},
		{"tampered payload", f.topics.Requests("court-changchun"), tampered, ""},
		{"signed by another agency than the topic's", f.topics.Requests("notary-dunhua"), good.Bytes, broker.ReasonTopicMismatch},
		{"not a request topic", "test.something-else", good.Bytes, broker.ReasonUnknownTopic},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := f.handleAt(t, tc.topic, tc.value, int64(i))
			out := res.Outputs[0]
			if out.Topic != f.topics.DeadLetter() || res.Outcome != broker.OutcomeDeadLetter {
				t.Fatalf("went to %s (%s), want the dead-letter topic", out.Topic, res.Outcome)
			}
			var dl broker.DeadLetter
			if err := json.Unmarshal(out.Value, &dl); err != nil {
				t.Fatal(err)
			}
			if tc.reason != "" && dl.Reason != tc.reason {
				t.Fatalf("reason %s, want %s", dl.Reason, tc.reason)
			}
			if dl.Reason == "" || dl.Digest != broker.Digest(tc.value) || string(dl.Message) != string(tc.value) {
				t.Fatalf("dead letter incomplete: %+v", dl)
			}
			// Logged before it is published, at the index its header names.
			idx, leaf := logged(t, f, out, fmt.Sprintf("dead_letter:%s:0:%d", tc.topic, i))
			l, err := translog.ParseLeaf(leaf)
			if err != nil || l.Kind != translog.KindDeadLetter || l.Request != dl.Digest || l.Receipt != translog.Digest(out.Value) || l.Reason != dl.Reason {
				t.Fatalf("leaf %d of the dead letter: %+v %v", idx, l, err)
			}
		})
	}
	if n, _ := f.store.Count(context.Background()); n != 0 {
		t.Fatalf("unauthenticated messages must not be decided; store has %d", n)
	}
}

// logged returns the leaf logged under key and checks that out carries its
// index.
func logged(t *testing.T, f *fixture, out broker.Output, key string) (int64, []byte) {
	t.Helper()
	idx, leaf, ok, err := f.store.Leaf(context.Background(), key)
	if !ok || err != nil {
		t.Fatalf("no leaf under %s: %v", key, err)
	}
	if got := out.Headers[broker.HeaderLogIndex]; got != strconv.FormatInt(idx, 10) {
		t.Fatalf("record carries log index %q, its leaf is %d", got, idx)
	}
	return idx, leaf
}

// TestPipelineLogsDecisions: every receipt is published with the index of
// its leaf, which records that receipt; a redelivery re-emits the same
// index.
func TestPipelineLogsDecisions(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	subj := schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}
	for _, q := range []string{"identity", "kinship", "criminal_record"} {
		s := f.sign(t, f.court, q, subj, f.now)
		res := f.handle(t, f.topics.Requests("court-changchun"), s.Bytes)
		r := f.receipt(t, res, "court-changchun")
		idx, leaf := logged(t, f, res.Outputs[0], s.Digest)
		l, err := translog.ParseLeaf(leaf)
		if err != nil || l.Kind != translog.KindDecision || l.Receipt != translog.Digest(res.Outputs[0].Value) ||
			l.Outcome != r.Decision || l.Reason != r.Reason || l.Type != schemas.TypeVerificationRequest || l.Agency != "court-changchun" {
			t.Fatalf("%s: leaf %d %+v %v, receipt %s/%s", q, idx, l, err, r.Decision, r.Reason)
		}
		if strings.Contains(string(leaf), p.IDNumber) || strings.Contains(string(leaf), p.Name) {
			t.Fatalf("leaf carries personal data: %s", leaf)
		}
		again := f.handle(t, f.topics.Requests("court-changchun"), s.Bytes)
		if again.Outputs[0].Headers[broker.HeaderLogIndex] != res.Outputs[0].Headers[broker.HeaderLogIndex] {
			t.Fatalf("redelivery re-emitted index %q, first %q", again.Outputs[0].Headers[broker.HeaderLogIndex], res.Outputs[0].Headers[broker.HeaderLogIndex])
		}
	}
}

type closedGate struct{}

func (closedGate) Open() error { return errors.New("log stale") }

type failingLeaves struct{}

func (failingLeaves) AppendLeaf(context.Context, string, []byte) (int64, error) {
	return 0, errors.New("store down")
}

// TestPipelineHoldsWhatCannotBeLogged: with the log gate closed, or the
// dead-letter leaf unstorable, nothing is published or decided: the
// message is retried (a transient error), never answered outside the log.
func TestPipelineHoldsWhatCannotBeLogged(t *testing.T) {
	f := newFixture(t)
	p := f.person(t, func(records.Person) bool { return true })
	s := f.sign(t, f.court, "identity", schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, f.now)
	ctx := context.Background()
	f.p.Gate = closedGate{}
	if res, err := f.p.Handle(ctx, broker.Message{Topic: f.topics.Requests("court-changchun"), Value: s.Bytes}); err == nil || len(res.Outputs) != 0 {
		t.Fatalf("decided with the log gate closed: %v %d outputs", err, len(res.Outputs))
	}
	if _, err := f.p.Handle(ctx, broker.Message{Topic: f.topics.Requests("court-changchun"), Value: []byte("not a jws")}); err == nil {
		t.Fatal("dead letter published with the log gate closed")
	}
	if n, _ := f.store.Count(ctx); n != 0 {
		t.Fatalf("%d decisions stored with the gate closed", n)
	}
	f.p.Gate, f.p.Leaves = nil, failingLeaves{}
	if _, err := f.p.Handle(ctx, broker.Message{Topic: f.topics.Requests("court-changchun"), Value: []byte("not a jws")}); err == nil {
		t.Fatal("dead letter published without its leaf")
	}
}

func mustOther(t *testing.T) *keys.Private {
	k, err := keys.Generate("court-changchun", "k9", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
