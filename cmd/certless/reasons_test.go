package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// TestRealKafkaEveryReasonCode sends, through the real Kafka and
// PostgreSQL, one message for each refusal reason and checks that each ends
// exactly where the contract says: a signed rejection receipt to the sender
// when the sender is authenticated, the dead-letter topic otherwise.
func TestRealKafkaEveryReasonCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	now := time.Now().UTC().Truncate(time.Second)

	// A court key revoked an hour ago, before the broker loads the keys.
	revoked, err := keys.GenerateInDir(cfg.KeysDir, "court-changchun", "k00000000-revoked", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Revoke(cfg.KeysDir, revoked.KID(), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	court, err := keys.SigningKey(cfg.KeysDir, "court-changchun", now)
	if err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})

	p := records.Generate(devSeed, devPersons).Persons[0]
	body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}})
	payload := func(mod func(*envelope.Payload)) envelope.Payload {
		pl := envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: "court-changchun",
			IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			Purpose: envelope.Purpose{Basis: "case-handling", CaseRef: "R-1"}, Body: body}
		if mod != nil {
			mod(&pl)
		}
		return pl
	}
	sign := func(k *keys.Private, pl envelope.Payload) []byte {
		b, err := envelope.Sign(k, pl)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	stranger, _ := keys.Generate("court-changchun", "unregistered", keys.EdDSA)
	good := sign(court, payload(nil))
	b64 := base64.RawURLEncoding.EncodeToString
	hs256 := b64([]byte(`{"alg":"HS256","kid":"court-changchun/x"}`)) + "." + b64([]byte(`{"type":"verification_request"}`)) + "." + b64([]byte("mac"))
	original := payload(nil)
	replay := original
	replay.Purpose.CaseRef = "R-2"

	type msg struct {
		reason string
		value  []byte
		// receipt is true when the sender is authenticated.
		receipt bool
		topic   string
	}
	msgs := []msg{
		{reason: "too_large", value: bytes.Repeat([]byte("x"), cfg.Limits.MaxMessageBytes+1)},
		{reason: "malformed", value: []byte("not.a.jws!")},
		{reason: "alg_not_allowed", value: []byte(hs256)},
		{reason: "unknown_key", value: sign(stranger, payload(nil))},
		{reason: "signature_invalid", value: append(append([]byte{}, good[:len(good)-6]...), "AAAAAA"...)},
		{reason: "key_revoked", value: sign(revoked, payload(nil))},
		{reason: "agency_mismatch", value: sign(court, payload(func(p *envelope.Payload) { p.Agency = "notary-dunhua" }))},
		{reason: broker.ReasonTopicMismatch, value: sign(court, payload(nil)), topic: svc.topics.Requests("notary-dunhua")},
		{reason: "not_yet_valid", receipt: true, value: sign(court, payload(func(p *envelope.Payload) {
			p.IssuedAt, p.ExpiresAt = now.Add(time.Hour), now.Add(2*time.Hour)
		}))},
		{reason: "expired", receipt: true, value: sign(court, payload(func(p *envelope.Payload) {
			p.IssuedAt, p.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
		}))},
		{reason: "lifetime_invalid", receipt: true, value: sign(court, payload(func(p *envelope.Payload) { p.ExpiresAt = now.Add(48 * time.Hour) }))},
		{reason: "schema_violation", receipt: true, value: sign(court, payload(func(p *envelope.Payload) { p.Body = json.RawMessage(`{"query":"horoscope"}`) }))},
	}
	for _, r := range envelope.Reasons {
		found := false
		for _, m := range msgs {
			found = found || m.reason == string(r)
		}
		if !found && r != envelope.ReasonReplay {
			t.Errorf("reason %s has no case here", r)
		}
	}

	c, err := newAgencyClient(ctx, cfg, "court-changchun", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka = svc.kafka
	defer c.Close()
	// The replay needs its original decided first.
	origSigned := sign(court, original)
	if _, err := c.Request(ctx, client.Signed{ID: original.ID, Digest: envelope.DigestOf(origSigned), Bytes: origSigned}); err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, msg{reason: "replay", receipt: true, value: sign(court, replay)})

	dlq, err := client.TailTopic(ctx, svc.kafka, svc.topics.DeadLetter())
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	w, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	prod, err := bkafka.NewProducer(svc.kafka, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	wantReceipts := map[string]string{}
	wantDead := map[string]string{}
	for _, m := range msgs {
		topic := m.topic
		if topic == "" {
			topic = svc.topics.Requests("court-changchun")
		}
		if err := prod.Produce(ctx, bkafka.Message{Topic: topic, Value: m.value}); err != nil {
			t.Fatalf("%s: %v", m.reason, err)
		}
		d := envelope.DigestOf(m.value)
		if m.receipt {
			wantReceipts[d] = m.reason
		} else {
			wantDead[d] = m.reason
		}
	}
	want := map[string]string{}
	for d := range wantReceipts {
		want[d] = ""
	}
	got, err := w.Await(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	for d, reason := range wantReceipts {
		r := got[d]
		if r.Decision != schemas.DecisionRejected || r.Reason != reason {
			t.Errorf("%s: receipt %s/%s", reason, r.Decision, r.Reason)
		}
	}
	for len(wantDead) > 0 {
		rec, err := dlq.Next(ctx)
		if err != nil {
			t.Fatalf("dead letters missing %v: %v", wantDead, err)
		}
		var dl broker.DeadLetter
		if err := json.Unmarshal(rec.Value, &dl); err != nil {
			t.Fatal(err)
		}
		reason, ok := wantDead[dl.Digest]
		if !ok {
			continue
		}
		if dl.Reason != reason {
			t.Errorf("%s: dead letter says %s", reason, dl.Reason)
		}
		delete(wantDead, dl.Digest)
	}
	t.Logf("every reason code: %d signed rejection receipts and %d dead letters, as the contract says", len(wantReceipts), len(msgs)-len(wantReceipts))
}

func newULID() string { return ulid.Make().String() }
