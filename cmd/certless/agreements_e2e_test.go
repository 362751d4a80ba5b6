package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
)

// The end-to-end tests of issue 8 on the real Kafka and PostgreSQL: a
// running broker keeps its last good agreement when a file is tampered
// with, two brokers in one consumer group share one quota exactly, and a
// suspension beside a running broker takes effect within seconds.

// agreementPoll is how often the brokers of these tests poll their keys and
// policies folders: fast enough that a change shows within a second.
const agreementPoll = 200 * time.Millisecond

// courtRecordsAgreement is the court's sample agreement written by
// ensureDevData, and the file it is in.
const courtRecordsAgreement = "court-changchun/records"

func courtRecordsFile(cfg *config.Config) string {
	return filepath.Join(cfg.PoliciesDir, "court-changchun-records.v1.yaml")
}

// replaceFile writes b to path by renaming a hidden temporary file over it,
// so the broker's watcher never reads a half-written agreement (the
// policies folder ignores names starting with a dot).
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// signingKey is agency's current signing key from the keys folder of cfg.
func signingKey(t *testing.T, cfg *config.Config, agency string) *keys.Private {
	t.Helper()
	k, err := keys.SigningKey(cfg.KeysDir, agency, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeCoSigned writes doc as <name>.yaml into the policies folder of cfg
// with the signatures of its requester and of the police data owner beside
// it, as demoAgreements does, and returns the parsed agreement and the
// reference receipts must cite.
func writeCoSigned(t *testing.T, cfg *config.Config, name string, doc []byte) (*policies.Agreement, schemas.AgreementRef) {
	t.Helper()
	a, err := policies.Parse(doc)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, doc)
	}
	now := time.Now()
	sigs, err := policies.Sign(doc, nil, signingKey(t, cfg, a.Parties.Requester), now)
	if err == nil {
		sigs, err = policies.Sign(doc, sigs, signingKey(t, cfg, a.Parties.Provider), now)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.PoliciesDir, name+".yaml")
	replaceFile(t, path+policies.SignaturesSuffix, sigs)
	replaceFile(t, path, doc)
	return a, schemas.AgreementRef{ID: a.ID, Version: a.Version, Digest: policies.Digest(doc)}
}

// loadedRef is the reference of agreement id in the set the broker holds
// now, and its status at now.
func loadedRef(svc *service, id string) (schemas.AgreementRef, policies.Status, bool) {
	for _, info := range svc.agreements.Set().Agreements() {
		if info.Ref.ID == id {
			st, _ := info.StatusAt(time.Now())
			return schemas.AgreementRef{ID: info.Ref.ID, Version: info.Ref.Version, Digest: info.Ref.Digest}, st, true
		}
	}
	return schemas.AgreementRef{}, "", false
}

// gauge reads the value of metric name with the label values want from
// reg (0 when no such series).
func gauge(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// askIdentity sends a court identity request about r.p, signed now, and
// returns its verified receipt.
func (r *liveRig) askIdentity(ctx context.Context) *client.Receipt {
	r.t.Helper()
	raw, err := envelope.Sign(signingKey(r.t, r.cfg, "court-changchun"), r.payload(time.Now().UTC().Truncate(time.Second)))
	if err != nil {
		r.t.Fatal(err)
	}
	return r.request(ctx, raw)
}

// answeredCiting fails unless got is answered and cites want.
func answeredCiting(t *testing.T, what string, got *client.Receipt, want schemas.AgreementRef) {
	t.Helper()
	if got.Decision != schemas.DecisionAnswered {
		t.Fatalf("%s: %s/%s %q, want answered", what, got.Decision, got.Reason, got.Detail)
	}
	if got.Agreement == nil || *got.Agreement != want {
		t.Fatalf("%s: receipt cites %+v, want %+v", what, got.Agreement, want)
	}
}

// TestRealKafkaAgreementTamperedKeepsLastGood: one byte of the court's
// co-signed agreement changed beside a running broker is refused by
// `certless agreement verify` (signature_invalid) and by the broker's
// watcher, loudly (log line and metric naming the file and the reason),
// while the broker keeps deciding against the last good version: receipts
// still cite its digest. Restored, the file is loaded again without a
// restart.
func TestRealKafkaAgreementTamperedKeepsLastGood(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newLiveRig(ctx, t, realConfig(ctx, t), serviceOptions{keysPoll: agreementPoll})
	path := courtRecordsFile(r.cfg)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good := schemas.AgreementRef{ID: courtRecordsAgreement, Version: 1, Digest: policies.Digest(orig)}
	if ref, st, ok := loadedRef(r.svc, good.ID); !ok || ref != good || st != policies.StatusActive {
		t.Fatalf("at start the broker holds %+v (%s, loaded %v), want %+v active", ref, st, ok, good)
	}
	setDigest := r.svc.agreements.Set().Digest()
	answeredCiting(t, "before tampering", r.askIdentity(ctx), good)
	verify := func() (int, string) {
		code, out, errs := runCLI(t, "agreement", "verify", path, "--dir", r.cfg.PoliciesDir, "--keys", r.cfg.KeysDir)
		return code, out + errs
	}
	if code, out := verify(); code != exitOK {
		t.Fatalf("certless agreement verify of the sample agreement: exit %d\n%s", code, out)
	}

	// One byte of the title changed.
	bad := bytes.Replace(orig, []byte("police records"), []byte("Police records"), 1)
	if diff := countDiff(orig, bad); diff != 1 {
		t.Fatalf("the tampered copy differs in %d bytes, want 1", diff)
	}
	replaceFile(t, path, bad)
	code, out := verify()
	if code == exitOK || !strings.Contains(out, string(policies.ReasonSignatureInvalid)) {
		t.Fatalf("certless agreement verify of a one-byte change: exit %d, want non-zero naming %s\n%s", code, policies.ReasonSignatureInvalid, out)
	}
	t.Logf("certless agreement verify of the tampered file, exit %d:\n%s", code, out)

	refused := func() []observer.LoggedEntry {
		var out []observer.LoggedEntry
		for _, e := range r.logs.FilterMessage("agreement refused").All() {
			m := e.ContextMap()
			file, _ := m["file"].(string)
			if m["reason"] == string(policies.ReasonSignatureInvalid) && m["last_good_version_kept"] == true && strings.HasPrefix(file, path) {
				out = append(out, e)
			}
		}
		return out
	}
	took := waitFor(ctx, t, "the broker refuses the tampered agreement", 10*time.Second, func() bool { return len(refused()) > 0 })
	t.Logf("the broker refused the tampered file %v after it changed", took.Round(time.Millisecond))
	if e := refused()[0]; e.Level != zapcore.ErrorLevel {
		t.Errorf("refusal logged at %v, want error", e.Level)
	}
	if n := gauge(t, r.svc.registry, "certless_agreement_files_refused", map[string]string{"reason": string(policies.ReasonSignatureInvalid)}); n != 1 {
		t.Errorf("certless_agreement_files_refused{reason=signature_invalid} = %v, want 1", n)
	}
	if ref, st, ok := loadedRef(r.svc, good.ID); !ok || ref != good || st != policies.StatusActive {
		t.Fatalf("after tampering the broker holds %+v (%s, loaded %v), want the last good %+v", ref, st, ok, good)
	}
	if d := r.svc.agreements.Set().Digest(); d != setDigest {
		t.Errorf("set digest %s after the refused reload, want the last good set's %s", d, setDigest)
	}
	answeredCiting(t, "after tampering", r.askIdentity(ctx), good)

	// Restored: loaded again, nothing refused, the same set as at start.
	inForce := len(r.logs.FilterMessage("agreements in force").All())
	replaceFile(t, path, orig)
	waitFor(ctx, t, "the restored agreement is loaded", 10*time.Second, func() bool {
		lines := r.logs.FilterMessage("agreements in force").All()
		return len(lines) > inForce && lines[len(lines)-1].ContextMap()["refused"] == int64(0)
	})
	if n := gauge(t, r.svc.registry, "certless_agreement_files_refused", nil); n != 0 {
		t.Errorf("%v files refused after the restore, want 0", n)
	}
	if d := r.svc.agreements.Set().Digest(); d != setDigest {
		t.Errorf("set digest %s after the restore, want %s", d, setDigest)
	}
	if code, out := verify(); code != exitOK {
		t.Fatalf("certless agreement verify of the restored file: exit %d\n%s", code, out)
	}
	answeredCiting(t, "after the restore", r.askIdentity(ctx), good)
}

func countDiff(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// householdFields are the fields the court's extra household agreement
// allows: not the members, head or region of the household.
var householdFields = []string{"as_of", "registered", "household_id"}

// householdAgreement is an agreement the court's sample agreement does not
// cover: household queries for litigation about residents of the province
// (wider than the court's prefecture), three fields, 7 a day.
func householdAgreement(id string, now time.Time) []byte {
	return fmt.Appendf(nil, `id: %s
version: 1
title: "Court household checks, 7 a day"
parties:
  requester: court-changchun
  provider: %s
queries:
  - query: household
    purposes: [litigation]
    fields: [%s]
    scope: ["220000"]
quotas:
  per_day: 7
validity:
  from: %q
  until: %q
status: active
`, id, policeOwner, strings.Join(householdFields, ", "),
		now.Add(-time.Hour).UTC().Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339))
}

// courtPartitions is how many partitions of the court's request topic the
// last assignment logged to logs gave the member (-1 before any).
func courtPartitions(logs *observer.ObservedLogs, topic string) int {
	lines := logs.FilterMessageSnippet("subscribed to topics and partitions").All()
	if len(lines) == 0 {
		return -1
	}
	return strings.Count(lines[len(lines)-1].Message, "{topic:"+topic+" ")
}

// TestRealKafkaAgreementQuotaTwoBrokers: two broker instances in one
// consumer group on the real Kafka, sharing one decision store on the real
// PostgreSQL, decide 20 concurrent household requests of the court under an
// agreement with a daily quota of 7: exactly 7 are answered and 13 denied
// quota_exceeded, every receipt cites that agreement, and every answer
// carries only the agreed fields.
func TestRealKafkaAgreementQuotaTwoBrokers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	now := time.Now()
	id := "court-changchun/household-quota-" + now.UTC().Format("20060102T150405")
	_, ref := writeCoSigned(t, cfg, "court-changchun-household-quota.v1", householdAgreement(id, now))

	type instance struct {
		svc  *service
		logs *observer.ObservedLogs
	}
	var brokers []instance
	for range 2 {
		core, logs := observer.New(zapcore.DebugLevel)
		svc := startLoggedService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0", keysPoll: agreementPoll}, zap.New(core))
		if got, _, ok := loadedRef(svc, id); !ok || got != ref {
			t.Fatalf("broker %d holds %+v (loaded %v), want %+v", len(brokers), got, ok, ref)
		}
		brokers = append(brokers, instance{svc, logs})
	}
	courtTopic := brokers[0].svc.topics.Requests("court-changchun")
	// Both members assigned: the court's 4 partitions split between them.
	split := func() (int, int) {
		return courtPartitions(brokers[0].logs, courtTopic), courtPartitions(brokers[1].logs, courtTopic)
	}
	deadline := time.Now().Add(45 * time.Second)
	for a, b := split(); a < 1 || b < 1 || a+b != cfg.Kafka.Partitions; a, b = split() {
		if time.Now().After(deadline) {
			t.Logf("the group did not split the court's %d partitions between the two brokers within 45s (last assignments %d and %d); one broker may decide all", cfg.Kafka.Partitions, a, b)
			break
		}
		waitABit(ctx, 100*time.Millisecond)
	}
	a, b := split()
	t.Logf("court partitions assigned: broker 0 has %d, broker 1 has %d", a, b)

	w := watchReceipts(ctx, t, cfg, brokers[0].svc, "court-changchun")

	key := signingKey(t, cfg, "court-changchun")
	issued := time.Now().UTC().Truncate(time.Second)
	var msgs []bkafka.Message
	want := map[string]string{}
	for _, p := range records.Generate(devSeed, devPersons).Persons {
		if len(msgs) == 20 {
			break
		}
		if p.CancelReason != "" {
			continue
		}
		body, _ := json.Marshal(schemas.VerificationRequest{Query: "household", Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}})
		pl := envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: "court-changchun",
			IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute),
			Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "L-7"}, Body: body}
		raw, err := envelope.Sign(key, pl)
		if err != nil {
			t.Fatal(err)
		}
		want[envelope.DigestOf(raw)] = pl.ID
		// Distinct keys spread the requests over the partitions.
		msgs = append(msgs, bkafka.Message{Topic: courtTopic, Key: []byte(pl.ID), Value: raw})
	}
	prod, err := bkafka.NewProducer(brokers[0].svc.kafka, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	start := time.Now()
	if err := prod.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	got, err := w.Await(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d receipts in %v", len(got), time.Since(start).Round(time.Millisecond))

	answered, exceeded := 0, 0
	for d, r := range got {
		if r.Agreement == nil || *r.Agreement != ref {
			t.Errorf("receipt of %s cites %+v, want %+v", want[d], r.Agreement, ref)
		}
		switch {
		case r.Decision == schemas.DecisionAnswered:
			answered++
			ans, err := r.Answer()
			if err != nil {
				t.Fatal(err)
			}
			names := slices.Sorted(maps.Keys(ans))
			for _, f := range names {
				if !slices.Contains(householdFields, f) {
					t.Errorf("answer of %s carries %q, which the agreement does not list (fields %v)", want[d], f, names)
				}
			}
			if ans["registered"] != true || ans["household_id"] == nil {
				t.Errorf("answer of %s lacks the agreed fields: %v", want[d], ans)
			}
		case r.Decision == schemas.DecisionDenied && r.Reason == policies.DenyQuotaExceeded:
			exceeded++
			if len(r.Receipt.Answer) != 0 {
				t.Errorf("a denied receipt carries an answer: %s", r.Receipt.Answer)
			}
		default:
			t.Errorf("receipt of %s: %s/%s %q", want[d], r.Decision, r.Reason, r.Detail)
		}
	}
	if answered != 7 || exceeded != 13 {
		t.Fatalf("%d answered and %d quota_exceeded, want exactly 7 and 13", answered, exceeded)
	}
	_, perDay, _, err := brokers[0].svc.store.Usage(ctx, "court-changchun", id, broker.QuotaVersion, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if perDay != 7 {
		t.Errorf("the decision store counts %d uses today, want 7", perDay)
	}

	// Who decided what, from each instance's own metrics.
	total := 0.0
	decided := make([]float64, len(brokers))
	for i, in := range brokers {
		labels := map[string]string{"agency": "court-changchun", "query": "household"}
		decided[i] = gauge(t, in.svc.registry, "certless_decisions_total", labels)
		labels["outcome"] = schemas.DecisionAnswered
		ans := gauge(t, in.svc.registry, "certless_decisions_total", labels)
		t.Logf("broker %d decided %v of the household requests (%v answered)", i, decided[i], ans)
		total += decided[i]
	}
	if total != 20 {
		t.Errorf("the two brokers decided %v household requests, want 20", total)
	}
	if decided[0] == 0 || decided[1] == 0 {
		t.Logf("one broker decided every request: Kafka gave it all the partitions the requests landed on; the shared quota was not exercised across instances this run")
	}
}

// TestRealKafkaAgreementSuspendTakesEffect: a suspension signed by the
// police alone and appended beside the court's agreement of a running
// broker takes effect within seconds: the next request is denied
// agreement_not_in_force, detail suspended, citing the agreement.
func TestRealKafkaAgreementSuspendTakesEffect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newLiveRig(ctx, t, realConfig(ctx, t), serviceOptions{keysPoll: agreementPoll})
	path := courtRecordsFile(r.cfg)
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := policies.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	ref := schemas.AgreementRef{ID: a.ID, Version: a.Version, Digest: policies.Digest(doc)}
	answeredCiting(t, "before the suspension", r.askIdentity(ctx), ref)

	st, err := policies.SignStatement(doc, a, policies.StatusSuspended, signingKey(t, r.cfg, policeOwner), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path+policies.StatusSuffix, st)
	took := waitFor(ctx, t, "the suspension is loaded", 10*time.Second, func() bool {
		_, status, ok := loadedRef(r.svc, ref.ID)
		return ok && status == policies.StatusSuspended
	})
	got := r.askIdentity(ctx)
	if got.Decision != schemas.DecisionDenied || got.Reason != policies.DenyNotInForce || !strings.Contains(got.Detail, policies.DetailSuspended) {
		t.Fatalf("after the suspension: %s/%s %q, want denied/%s %s", got.Decision, got.Reason, got.Detail, policies.DenyNotInForce, policies.DetailSuspended)
	}
	if got.Agreement == nil || *got.Agreement != ref {
		t.Fatalf("the denial cites %+v, want %+v", got.Agreement, ref)
	}
	if len(got.Receipt.Answer) != 0 {
		t.Fatalf("a denial carries an answer: %s", got.Receipt.Answer)
	}
	if n := gauge(t, r.svc.registry, "certless_agreements", map[string]string{"status": string(policies.StatusSuspended)}); n != 1 {
		t.Errorf("certless_agreements{status=suspended} = %v, want 1", n)
	}
	t.Logf("the suspension took effect %v after it was written", took.Round(time.Millisecond))
}
