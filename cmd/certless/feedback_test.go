package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/statuslist"
)

// feedbackRig is a broker on the real Kafka and PostgreSQL with the court's
// and the school's clients, the court's receipts topic and the data owner's
// dispute topic tailed, and the keys to verify what they carry.
type feedbackRig struct {
	t       *testing.T
	cfg     *config.Config
	cfgPath string
	svc     *service
	clock   *testClock
	court   *keys.Private
	c, edu  *client.Client
	notices *client.Tail // the court's receipts topic
	owner   *client.Tail // police-jilin's dispute topic
	trusted *keys.Registry
	p       records.Person
	// skipped are records of the receipts topic a wait passed over (the
	// notices of one step travel on several partitions, in any order).
	skipped []client.Record
}

// next returns the next record of the court's receipts topic that keep
// accepts, first among those passed over before.
func (r *feedbackRig) next(ctx context.Context, keep func(client.Record) bool) (client.Record, error) {
	for i, rec := range r.skipped {
		if keep(rec) {
			r.skipped = append(r.skipped[:i:i], r.skipped[i+1:]...)
			return rec, nil
		}
	}
	for {
		rec, err := r.notices.Next(ctx)
		if err != nil {
			return rec, err
		}
		if keep(rec) {
			return rec, nil
		}
		r.skipped = append(r.skipped, rec)
	}
}

func newFeedbackRig(ctx context.Context, t *testing.T) *feedbackRig {
	t.Helper()
	cfg := realConfig(ctx, t)
	r := &feedbackRig{t: t, cfg: cfg, cfgPath: filepath.Join(cfg.DataDir, config.FileName), clock: &testClock{now: time.Now().UTC()}}
	if err := cfg.Write(r.cfgPath); err != nil {
		t.Fatal(err)
	}
	r.svc = startLoggedService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0", directoryPoll: 100 * time.Millisecond, feedbackClock: r.clock.Now}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	var err error
	if r.court, err = keys.SigningKey(cfg.KeysDir, "court-changchun", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r.trusted, err = keys.LoadDir(cfg.KeysDir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id  string
		out **client.Client
	}{{"court-changchun", &r.c}, {"edu-jian", &r.edu}} {
		cl, err := newAgencyClient(ctx, cfg, c.id, "")
		if err != nil {
			t.Fatal(err)
		}
		cl.Kafka = r.svc.kafka
		t.Cleanup(func() { cl.Close() })
		*c.out = cl
	}
	if r.notices, err = client.TailTopic(ctx, r.svc.kafka, r.svc.topics.Receipts("court-changchun")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.notices.Close)
	if r.owner, err = client.TailTopic(ctx, r.svc.kafka, r.svc.topics.Disputes(policeOwner)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.owner.Close)
	r.p = demoSubjects(records.Generate(devSeed, devPersons)).clean
	return r
}

// send signs a message of type typ from agency with k and returns its
// verified receipt.
func (r *feedbackRig) send(ctx context.Context, c *client.Client, k *keys.Private, typ, id string, body any) *client.Receipt {
	r.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		r.t.Fatal(err)
	}
	issued := time.Now().UTC().Truncate(time.Second)
	raw, err := envelope.Sign(k, envelope.Payload{Type: typ, ID: id, Agency: k.Agency, IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute),
		Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "(2026)吉01民初7号"}, Body: b})
	if err != nil {
		r.t.Fatal(err)
	}
	return r.sendRaw(ctx, c, raw)
}

func (r *feedbackRig) sendRaw(ctx context.Context, c *client.Client, raw []byte) *client.Receipt {
	r.t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	got, err := c.Request(rctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
	if err != nil {
		r.t.Fatalf("no receipt: %v", err)
	}
	return got
}

// answered asks an identity question and returns the answered receipt
// with the reference feedback cites.
func (r *feedbackRig) answered(ctx context.Context) (*client.Receipt, schemas.MessageRef) {
	r.t.Helper()
	got := r.send(ctx, r.c, r.court, schemas.TypeVerificationRequest, newULID(),
		schemas.VerificationRequest{Query: "identity", Subject: schemas.Subject{IDNumber: r.p.IDNumber, Name: r.p.Name}})
	if got.Decision != schemas.DecisionAnswered {
		r.t.Fatalf("request: %s/%s", got.Decision, got.Reason)
	}
	return got, schemas.MessageRef{ID: got.Envelope.ID, Digest: envelope.DigestOf(got.Raw)}
}

// notice returns the next verified dispute notice of dispute id with
// status on the court's receipts topic.
func (r *feedbackRig) notice(ctx context.Context, id, status string) schemas.DisputeStatus {
	r.t.Helper()
	set, _ := schemas.Default()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		rec, err := r.next(wctx, func(rec client.Record) bool {
			return rec.Headers[feedback.HeaderDispute] == id && rec.Headers[feedback.HeaderDisputeStatus] == status
		})
		if err != nil {
			r.t.Fatalf("no %s notice of dispute %s: %v", status, id, err)
		}
		v, err := envelope.VerifyOffline(rec.Value, r.trusted, set)
		if err != nil || v.Type != schemas.TypeDisputeStatus || v.Agency != r.cfg.BrokerID {
			r.t.Fatalf("%s notice does not verify as the broker's dispute_status: %v (%+v)", status, err, v)
		}
		var st schemas.DisputeStatus
		if err := json.Unmarshal(v.Body, &st); err != nil {
			r.t.Fatal(err)
		}
		if st.Status != status || st.Dispute.ID != id || st.Disputant != "court-changchun" || st.Owner != policeOwner {
			r.t.Fatalf("notice %+v", st)
		}
		return st
	}
}

// TestRealKafkaDisputeLifecycle: on the real Kafka and PostgreSQL, for each
// outcome, the court disputes an answer; the dispute's receipt names it,
// open with a deadline; the broker forwards the court's signed dispute to
// the data owner's topic and tells the court; the data owner resolves it
// with `certless dispute resolve`, signed with its key; the court gets the
// resolution inside a signed notice, acknowledges it, and the dispute is
// closed. Every step after open is a transparency-log leaf.
func TestRealKafkaDisputeLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newFeedbackRig(ctx, t)
	set, _ := schemas.Default()

	for _, outcome := range []string{schemas.DisputeConfirmed, schemas.DisputeCorrected} {
		t.Run(outcome, func(t *testing.T) {
			// An earlier answer about the same subject, by the same query:
			// the correction revokes it too.
			earlier, _ := r.answered(ctx)
			disputed, ref := r.answered(ctx)
			id := newULID()
			got := r.send(ctx, r.c, r.court, schemas.TypeDispute, id, schemas.Dispute{Receipt: ref, Fields: []string{"id_name_match"},
				Statement: "the person appeared in court under this name", EvidenceRef: "hearing record 7"})
			if got.Decision != schemas.DecisionAnswered || got.Dispute == nil || got.Dispute.ID != id || got.Dispute.Status != schemas.DisputeOpen ||
				got.Dispute.Due == nil || !got.Dispute.Due.After(r.clock.Now()) {
				t.Fatalf("dispute receipt: %s/%s %+v", got.Decision, got.Reason, got.Dispute)
			}

			fwd := r.notice(ctx, id, schemas.DisputeForwarded)
			if fwd.Receipt != ref || fwd.Due == nil || !fwd.Due.Equal(*got.Dispute.Due) {
				t.Fatalf("forwarded notice %+v", fwd)
			}
			// The data owner gets the court's own signed dispute.
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			defer wcancel()
			for {
				rec, err := r.owner.Next(wctx)
				if err != nil {
					t.Fatalf("nothing on the data owner's dispute topic: %v", err)
				}
				if rec.Headers[feedback.HeaderDispute] != id {
					continue
				}
				v, err := envelope.VerifyOffline(rec.Value, r.trusted, set)
				if err != nil || v.ID != id || v.Agency != "court-changchun" || v.Type != schemas.TypeDispute {
					t.Fatalf("forwarded dispute: %v %+v", err, v)
				}
				if rec.Headers[feedback.HeaderNotice] == "" {
					t.Fatal("the forwarded dispute carries no notice")
				}
				break
			}

			args := []string{"--config", r.cfgPath, "dispute", "resolve", id, "--outcome", outcome, "--note", "checked against the 1990 register entry"}
			if outcome == schemas.DisputeCorrected {
				if code, _, errOut := runCLI(t, args...); code != exitUsage || !strings.Contains(errOut, "--corrected-answer") {
					t.Fatalf("corrected without the corrected answer: exit %d %s", code, errOut)
				}
				file := filepath.Join(t.TempDir(), "corrected.json")
				if err := os.WriteFile(file, []byte(`{"as_of": "2026-12-01T00:00:00Z", "id_name_match": false}`), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--corrected-answer", file)
			}
			code, out, errOut := runCLI(t, args...)
			if code != exitOK || !strings.Contains(out, outcome) {
				t.Fatalf("resolve: %d %s %s", code, out, errOut)
			}
			res := r.notice(ctx, id, outcome)
			rv, err := envelope.VerifyOffline([]byte(res.Resolution), r.trusted, set)
			if err != nil || rv.Agency != policeOwner || rv.Type != schemas.TypeDisputeResolution {
				t.Fatalf("the resolution does not verify as the data owner's: %v %+v", err, rv)
			}
			var body schemas.DisputeResolution
			if err := json.Unmarshal(rv.Body, &body); err != nil || body.Outcome != outcome || body.Dispute.ID != id ||
				(outcome == schemas.DisputeCorrected) != (len(body.CorrectedAnswer) > 0) {
				t.Fatalf("resolution body %+v %v", body, err)
			}

			r.checkRevoked(ctx, outcome == schemas.DisputeCorrected, id, earlier, disputed)
			r.verifyOffline(ctx, disputed, outcome == schemas.DisputeCorrected, id)

			ack := r.send(ctx, r.c, r.court, schemas.TypeAcknowledgement, newULID(), schemas.Acknowledgement{
				RefType: schemas.TypeDisputeResolution, Ref: schemas.MessageRef{ID: rv.ID, Digest: rv.Digest}})
			if ack.Decision != schemas.DecisionAnswered {
				t.Fatalf("acknowledging the resolution: %s/%s %s", ack.Decision, ack.Reason, ack.Detail)
			}
			r.notice(ctx, id, schemas.DisputeClosed)

			d, ok, err := r.svc.feedback.Dispute(ctx, id)
			if err != nil || !ok || d.Status != schemas.DisputeClosed {
				t.Fatalf("stored dispute %+v %v", d, err)
			}
			evs, err := r.svc.feedback.Events(ctx, id)
			if err != nil || len(evs) != 4 {
				t.Fatalf("steps %+v %v", evs, err)
			}
			want := []string{schemas.DisputeOpen, schemas.DisputeForwarded, outcome, schemas.DisputeClosed}
			for i, ev := range evs {
				if ev.Status != want[i] || ev.SentAt.IsZero() {
					t.Errorf("step %d: %+v, want %s, sent", i+1, ev, want[i])
				}
				if i == 0 {
					continue
				}
				if _, leaf, ok, err := r.svc.store.Leaf(ctx, fmt.Sprintf("dispute:%s:%d", id, ev.Seq)); err != nil || !ok || !strings.Contains(string(leaf), `"kind":"dispute"`) {
					t.Errorf("step %d has no dispute leaf: %s %v %v", ev.Seq, leaf, ok, err)
				}
			}
		})
	}
}

// TestRealKafkaHostileFeedback: through the running broker, feedback that
// can never succeed is refused with a signed receipt and its reason, and
// duplicate feedback gets the same receipt; a dispute left unanswered past
// its deadline (an injected clock) shows as overdue in the store and the
// metrics.
func TestRealKafkaHostileFeedback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newFeedbackRig(ctx, t)
	_, ref := r.answered(ctx)
	edu, err := keys.SigningKey(r.cfg.KeysDir, "edu-jian", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dispute := func(ref schemas.MessageRef, fields ...string) schemas.Dispute {
		return schemas.Dispute{Receipt: ref, Fields: fields, Statement: "wrong"}
	}
	denied := r.send(ctx, r.c, r.court, schemas.TypeVerificationRequest, newULID(),
		schemas.VerificationRequest{Query: "household", Subject: schemas.Subject{IDNumber: r.p.IDNumber, Name: r.p.Name}})
	if denied.Decision != schemas.DecisionDenied {
		t.Fatalf("the court's household request: %s", denied.Decision)
	}
	deniedRef := schemas.MessageRef{ID: denied.Envelope.ID, Digest: envelope.DigestOf(denied.Raw)}

	first := newULID()
	for _, c := range []struct {
		name   string
		c      *client.Client
		k      *keys.Private
		typ    string
		id     string
		body   any
		reason string
	}{
		{"another agency's receipt", r.edu, edu, schemas.TypeDispute, newULID(), dispute(ref, "id_name_match"), feedback.ReasonNotYourReceipt},
		{"another agency's receipt, acknowledged", r.edu, edu, schemas.TypeAcknowledgement, newULID(), schemas.Acknowledgement{RefType: "receipt", Ref: ref}, feedback.ReasonNotYourReceipt},
		{"an unknown receipt", r.c, r.court, schemas.TypeDispute, newULID(), dispute(schemas.MessageRef{ID: newULID(), Digest: ref.Digest}, "id_name_match"), feedback.ReasonUnknownReceipt},
		{"a wrong receipt digest", r.c, r.court, schemas.TypeDispute, newULID(), dispute(schemas.MessageRef{ID: ref.ID, Digest: deniedRef.Digest}, "id_name_match"), feedback.ReasonDigestMismatch},
		{"a field the receipt does not carry", r.c, r.court, schemas.TypeDispute, newULID(), dispute(ref, "household_id"), feedback.ReasonFieldNotInReceipt},
		{"a receipt without an answer", r.c, r.court, schemas.TypeDispute, newULID(), dispute(deniedRef, "household_id"), feedback.ReasonNothingToDispute},
		{"an unknown resolution", r.c, r.court, schemas.TypeAcknowledgement, newULID(), schemas.Acknowledgement{RefType: schemas.TypeDisputeResolution, Ref: ref}, feedback.ReasonUnknownResolution},
		{"the first, valid dispute", r.c, r.court, schemas.TypeDispute, first, dispute(ref, "id_name_match"), ""},
		{"its id replayed with other content", r.c, r.court, schemas.TypeDispute, first, dispute(ref, "status"), "replay"},
	} {
		got := r.send(ctx, c.c, c.k, c.typ, c.id, c.body)
		switch {
		case c.reason == "" && got.Decision != schemas.DecisionAnswered:
			t.Errorf("%s: %s/%s %s", c.name, got.Decision, got.Reason, got.Detail)
		case c.reason != "" && (got.Decision != schemas.DecisionRejected || got.Reason != c.reason):
			t.Errorf("%s: %s/%s %q, want rejected/%s", c.name, got.Decision, got.Reason, got.Detail, c.reason)
		}
	}

	// The same acknowledgement twice: one receipt, stored once.
	b, _ := json.Marshal(schemas.Acknowledgement{RefType: "receipt", Ref: ref, Kind: schemas.AckUsed})
	issued := time.Now().UTC().Truncate(time.Second)
	raw, err := envelope.Sign(r.court, envelope.Payload{Type: schemas.TypeAcknowledgement, ID: newULID(), Agency: "court-changchun",
		IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute), Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "(2026)吉01民初7号"}, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	one, two := r.sendRaw(ctx, r.c, raw), r.sendRaw(ctx, r.c, raw)
	if one.Decision != schemas.DecisionAnswered || one.Envelope.ID != two.Envelope.ID {
		t.Fatalf("duplicate acknowledgement: %s, receipts %s and %s", one.Decision, one.Envelope.ID, two.Envelope.ID)
	}
	acks, err := r.svc.feedback.Acks(ctx, ref.ID)
	if err != nil || len(acks) != 1 || acks[0].Kind != schemas.AckUsed || acks[0].CaseRef != "(2026)吉01民初7号" {
		t.Fatalf("acknowledgements of the receipt: %+v %v", acks, err)
	}

	// Unanswered past the deadline: overdue, on the injected clock.
	r.notice(ctx, first, schemas.DisputeForwarded)
	d, _, err := r.svc.feedback.Dispute(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	overdue := func() float64 {
		t.Helper()
		fams, err := r.svc.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "certless_disputes_overdue" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == policeOwner {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	if n := overdue(); n != 0 {
		t.Fatalf("overdue before the deadline: %v", n)
	}
	r.clock.advance(d.Due.Sub(r.clock.Now()) + time.Minute)
	late, err := r.svc.feedback.List(ctx, feedback.Filter{OverdueAt: r.clock.Now()})
	if err != nil || len(late) != 1 || late[0].ID != first {
		t.Fatalf("overdue disputes: %+v %v", late, err)
	}
	// The metric caches its query for 5 s: it follows within that.
	testenv.Eventually(ctx, t, "the overdue metric", 20*time.Second, func() error {
		if n := overdue(); n != 1 {
			return fmt.Errorf("certless_disputes_overdue{owner=%q} = %v", policeOwner, n)
		}
		return nil
	})
}

// checkRevoked checks, when want, that the receipts got a signed
// receipt_revocation notice naming the dispute and that the status list
// the broker serves has their bits set, with why; and when not, that the
// list leaves them clear. An answer about another subject stays clear.
func (r *feedbackRig) checkRevoked(ctx context.Context, want bool, dispute string, receipts ...*client.Receipt) {
	r.t.Helper()
	set, _ := schemas.Default()
	if want {
		pending := map[string]bool{}
		for _, rc := range receipts {
			pending[rc.Envelope.ID] = true
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for len(pending) > 0 {
			rec, err := r.next(wctx, func(rec client.Record) bool { return rec.Headers[feedback.HeaderRevoked] != "" })
			if err != nil {
				r.t.Fatalf("no revocation notice for %v: %v", pending, err)
			}
			v, err := envelope.VerifyOffline(rec.Value, r.trusted, set)
			if err != nil || v.Type != schemas.TypeReceiptRevocation {
				r.t.Fatalf("revocation notice: %v %+v", err, v)
			}
			var rv schemas.ReceiptRevocation
			if err := json.Unmarshal(v.Body, &rv); err != nil || rv.Dispute == nil || rv.Dispute.ID != dispute || rv.Reason != feedback.ReasonCorrected {
				r.t.Fatalf("revocation notice body %+v %v", rv, err)
			}
			delete(pending, rv.Receipt.ID)
		}
	}
	other := r.send(ctx, r.c, r.court, schemas.TypeVerificationRequest, newULID(), schemas.VerificationRequest{Query: "identity",
		Subject: schemas.Subject{IDNumber: demoSubjects(records.Generate(devSeed, devPersons)).offender.IDNumber,
			Name: demoSubjects(records.Generate(devSeed, devPersons)).offender.Name}})
	for _, rc := range append(receipts, other) {
		e := rc.CredentialStatus
		if e == nil {
			r.t.Fatalf("receipt %s carries no credentialStatus", rc.Envelope.ID)
		}
		resp, err := http.Get(e.StatusListCredential)
		if err != nil {
			r.t.Fatal(err)
		}
		jwt, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vc+jwt" {
			r.t.Fatalf("GET %s: %s %s", e.StatusListCredential, resp.Status, resp.Header.Get("Content-Type"))
		}
		c, err := statuslist.Open(jwt, r.trusted)
		if err != nil {
			r.t.Fatal(err)
		}
		chk, err := c.Check(*e)
		if err != nil {
			r.t.Fatal(err)
		}
		wantHere := want && rc != other
		if chk.Revoked != wantHere || (wantHere && chk.Why.Dispute != dispute) {
			r.t.Errorf("receipt %s: revoked %v (%+v), want %v", rc.Envelope.ID, chk.Revoked, chk.Why, wantHere)
		}
	}
}

// verifyOffline saves the receipt's bundle and status list with the CLI,
// then verifies them offline: revoked (exit 1, naming the reason and the
// dispute) or not; and exports the receipt as a vc+jwt credential.
func (r *feedbackRig) verifyOffline(ctx context.Context, rc *client.Receipt, revoked bool, dispute string) {
	r.t.Helper()
	dir := r.t.TempDir()
	bundle, status := filepath.Join(dir, "r.bundle.json"), filepath.Join(dir, "r.status.jwt")
	testenv.Eventually(ctx, r.t, "the receipt's leaf under a checkpoint", 30*time.Second, func() error {
		code, out, errOut := runCLI(r.t, "--config", r.cfgPath, "receipt", "proof", "--id", rc.RequestDigest, "--out", bundle, "--status-out", status)
		if code != exitOK {
			return fmt.Errorf("receipt proof: %d %s %s", code, out, errOut)
		}
		return nil
	})
	code, out, errOut := runCLI(r.t, "--config", r.cfgPath, "receipt", "verify", bundle, "--status", status)
	switch {
	case revoked && (code == exitOK || !strings.Contains(out, "revoked: corrected, dispute "+dispute+", at ")):
		r.t.Errorf("offline verify of a revoked receipt: exit %d\n%s%s", code, out, errOut)
	case !revoked && (code != exitOK || !strings.Contains(out, "not revoked as of")):
		r.t.Errorf("offline verify of a receipt in force: exit %d\n%s%s", code, out, errOut)
	}
	vc := filepath.Join(dir, "r.vc.jwt")
	if code, out, errOut := runCLI(r.t, "--config", r.cfgPath, "receipt", "export", "--id", rc.RequestDigest, "--format", "vc", "--out", vc); code != exitOK {
		r.t.Fatalf("receipt export: %d %s %s", code, out, errOut)
	}
	jwt, err := os.ReadFile(vc)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := statuslist.Open(jwt, r.trusted); err == nil {
		r.t.Error("a receipt credential opened as a status list")
	}
	jws, err := jose.ParseSigned(string(jwt), []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil || jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != "vc+jwt" {
		r.t.Fatalf("exported credential: %v", err)
	}
	pub, _ := r.trusted.Lookup(jws.Signatures[0].Protected.KeyID)
	payload, err := jws.Verify(pub.Key)
	if err != nil || !strings.Contains(string(payload), `"credentialStatus"`) || !strings.Contains(string(payload), rc.Envelope.ID) {
		r.t.Fatalf("exported credential does not verify or lacks its status: %v %s", err, payload)
	}
}
