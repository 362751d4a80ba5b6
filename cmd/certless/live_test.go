package main

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// liveRig is a broker on the real Kafka and PostgreSQL with the court's
// client, a dead-letter tail, a producer and the broker's log observed.
type liveRig struct {
	t    *testing.T
	cfg  *config.Config
	svc  *service
	c    *client.Client
	dlq  *client.Tail
	prod *bkafka.Producer
	logs *observer.ObservedLogs
	p    records.Person
}

func newLiveRig(ctx context.Context, t *testing.T, cfg *config.Config, opts serviceOptions) *liveRig {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	opts.httpAddr = "127.0.0.1:0"
	r := &liveRig{t: t, cfg: cfg, logs: logs, p: records.Generate(devSeed, devPersons).Persons[1]}
	r.svc = startLoggedService(ctx, t, cfg, opts, zap.New(core))
	select {
	case <-r.svc.keysWatching:
	case <-ctx.Done():
		t.Fatal("the broker never started watching its keys")
	}
	var err error
	if r.c, err = newAgencyClient(ctx, cfg, "court-changchun", ""); err != nil {
		t.Fatal(err)
	}
	r.c.Kafka = r.svc.kafka
	t.Cleanup(func() { r.c.Close() })
	if r.dlq, err = client.TailTopic(ctx, r.svc.kafka, r.svc.topics.DeadLetter()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.dlq.Close)
	if r.prod, err = bkafka.NewProducer(r.svc.kafka, bkafka.ProducerOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.prod.Close() })
	return r
}

// payload is an identity request of the court about r.p, issued at issued.
func (r *liveRig) payload(issued time.Time) envelope.Payload {
	body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: schemas.Subject{IDNumber: r.p.IDNumber, Name: r.p.Name}})
	return envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: "court-changchun",
		IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute),
		Purpose: envelope.Purpose{Basis: "criminal-proceedings", CaseRef: "L-1"}, Body: body}
}

// request sends raw on the court's topic and returns its verified receipt.
func (r *liveRig) request(ctx context.Context, raw []byte) *client.Receipt {
	r.t.Helper()
	got, err := r.c.Request(ctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

// deadLetter sends raw on topic and returns its dead-letter entry.
func (r *liveRig) deadLetter(ctx context.Context, topic string, raw []byte) broker.DeadLetter {
	r.t.Helper()
	if err := r.prod.Produce(ctx, bkafka.Message{Topic: topic, Value: raw}); err != nil {
		r.t.Fatal(err)
	}
	digest := envelope.DigestOf(raw)
	for {
		rec, err := r.dlq.Next(ctx)
		if err != nil {
			r.t.Fatalf("no dead letter for %s: %v", digest, err)
		}
		var dl broker.DeadLetter
		if err := json.Unmarshal(rec.Value, &dl); err != nil {
			r.t.Fatal(err)
		}
		if dl.Digest == digest {
			return dl
		}
	}
}

// noPersonalData fails when any log line, message or field, carries the
// subject's ID number or name, or secret.
func (r *liveRig) noPersonalData(secrets ...string) {
	r.t.Helper()
	for _, e := range r.logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range append([]string{r.p.IDNumber, r.p.Name}, secrets...) {
			if s != "" && strings.Contains(line, s) {
				r.t.Errorf("a log line carries %q: %s", s, line)
			}
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(ctx context.Context, t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.Eventually(ctx, t, what, within, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	return time.Since(start)
}

var errNotYet = errors.New("condition does not hold yet")

// TestRealKafkaKeysTakeEffectLive: a key generated beside a running broker
// verifies within seconds, without a restart; revoked, it verifies nothing
// the broker receives afterwards, whatever issued_at claims; every change
// is logged without key material.
func TestRealKafkaKeysTakeEffectLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newLiveRig(ctx, t, realConfig(ctx, t), serviceOptions{})

	k, err := keys.GenerateInDir(r.cfg.KeysDir, "court-changchun", "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	took := waitFor(ctx, t, "new key loaded", 10*time.Second, func() bool { _, ok := r.svc.keys.Lookup(k.KID()); return ok })
	t.Logf("a generated key took effect after %v", took.Round(time.Millisecond))
	raw, err := envelope.Sign(k, r.payload(time.Now().UTC().Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.request(ctx, raw); got.Decision != schemas.DecisionAnswered || got.Envelope.KeyID == "" {
		t.Fatalf("request signed with the new key: %s/%s", got.Decision, got.Reason)
	}

	revokedAt := time.Now().UTC()
	if err := keys.Revoke(r.cfg.KeysDir, k.KID(), revokedAt); err != nil {
		t.Fatal(err)
	}
	took = waitFor(ctx, t, "revocation loaded", 10*time.Second, func() bool { p, _ := r.svc.keys.Lookup(k.KID()); return p.Revoked() })
	t.Logf("a revocation took effect after %v", took.Round(time.Millisecond))
	// Signed "before" the revocation, received after it: refused.
	backdated, err := envelope.Sign(k, r.payload(revokedAt.Add(-time.Minute).Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if dl := r.deadLetter(ctx, r.svc.topics.Requests("court-changchun"), backdated); dl.Reason != string(envelope.ReasonKeyRevoked) {
		t.Fatalf("backdated request of a revoked key: %s (%s)", dl.Reason, dl.Detail)
	}

	for _, change := range []string{"added", "revoked"} {
		found := false
		for _, e := range r.logs.FilterMessage("key changed").All() {
			m := e.ContextMap()
			found = found || (m["kid"] == k.KID() && m["change"] == change && m["agency"] == "court-changchun")
			for name := range m {
				if name != "kid" && name != "agency" && name != "change" && name != "revoked_at" {
					t.Errorf("key change logged with field %q", name)
				}
			}
		}
		if !found {
			t.Errorf("no %s log line for %s", change, k.KID())
		}
	}
	r.noPersonalData()
}

// TestRealKafkaSIGHUPReloadsKeys: with polling too slow to matter, SIGHUP
// reloads the keys folder at once.
func TestRealKafkaSIGHUPReloadsKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newLiveRig(ctx, t, realConfig(ctx, t), serviceOptions{keysPoll: time.Hour})
	k, err := keys.GenerateInDir(r.cfg.KeysDir, "court-changchun", "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.svc.keys.Lookup(k.KID()); ok {
		t.Fatal("loaded before SIGHUP; the test proves nothing")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "SIGHUP reload", 10*time.Second, func() bool { _, ok := r.svc.keys.Lookup(k.KID()); return ok })
	raw, err := envelope.Sign(k, r.payload(time.Now().UTC().Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.request(ctx, raw); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("after SIGHUP: %s/%s", got.Decision, got.Reason)
	}
}

// TestRealKafkaStrictInput: through the running broker, duplicate member
// names, a high-S ES256 signature and a cross-topic redelivery are refused,
// each dead letter is logged once with routing facts only, and no log line
// carries personal data or the records reader's password.
func TestRealKafkaStrictInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	es, err := keys.GenerateInDir(cfg.KeysDir, "court-changchun", "es256", keys.ES256)
	if err != nil {
		t.Fatal(err)
	}
	r := newLiveRig(ctx, t, cfg, serviceOptions{})
	now := time.Now().UTC().Truncate(time.Second)
	courtTopic := r.svc.topics.Requests("court-changchun")

	// Duplicate member names: the same signed bytes read two ways.
	pl, err := json.Marshal(r.payload(now))
	if err != nil {
		t.Fatal(err)
	}
	dup := strings.Replace(string(pl), `"agency":"court-changchun"`, `"agency":"court-changchun","agency":"notary-dunhua"`, 1)
	dupRaw, err := envelope.SignBytes(es, []byte(dup))
	if err != nil {
		t.Fatal(err)
	}
	if dl := r.deadLetter(ctx, courtTopic, dupRaw); dl.Reason != string(envelope.ReasonMalformed) || !strings.Contains(dl.Detail, "duplicate") {
		t.Fatalf("duplicate member names: %s (%s)", dl.Reason, dl.Detail)
	}

	// High S: the same ES256 signature with s replaced by n-s verifies in
	// plain ECDSA, and is refused.
	good, err := envelope.Sign(es, r.payload(now))
	if err != nil {
		t.Fatal(err)
	}
	if dl := r.deadLetter(ctx, courtTopic, highS(t, good)); dl.Reason != string(envelope.ReasonSignatureInvalid) {
		t.Fatalf("high-S ES256: %s (%s)", dl.Reason, dl.Detail)
	}
	if got := r.request(ctx, good); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("the low-S original: %s/%s", got.Decision, got.Reason)
	}

	// The decided request again, on another agency's topic.
	if dl := r.deadLetter(ctx, r.svc.topics.Requests("notary-dunhua"), good); dl.Reason != broker.ReasonTopicMismatch {
		t.Fatalf("cross-topic redelivery: %s (%s)", dl.Reason, dl.Detail)
	}

	dls := r.logs.FilterMessage("dead letter").All()
	if len(dls) != 3 {
		t.Fatalf("%d dead-letter log lines, want one per dead letter (3)", len(dls))
	}
	for _, e := range dls {
		if e.Level != zapcore.WarnLevel {
			t.Errorf("dead letter logged at %v", e.Level)
		}
		m := e.ContextMap()
		for _, f := range []string{"reason", "kid", "topic", "partition", "offset", "digest"} {
			if _, ok := m[f]; !ok {
				t.Errorf("dead-letter log line lacks %s: %v", f, m)
			}
		}
		if kid, _ := m["kid"].(string); !strings.HasPrefix(kid, "court-changchun/") {
			t.Errorf("dead letter logged without the kid its header claims: %v", m)
		}
	}
	password := ""
	if dsn, ok := cfg.Adapters[0].Options["dsn"].(string); ok {
		if i, j := strings.Index(dsn, ":"), strings.Index(dsn, "@"); i >= 0 && j > i {
			password = dsn[strings.LastIndex(dsn[:j], ":")+1 : j]
		}
	}
	if len(password) < 8 {
		t.Fatalf("could not find the reader password in %q", redactDSN(fmt.Sprint(cfg.Adapters[0].Options["dsn"])))
	}
	r.noPersonalData(password)
}

// highS rewrites the ES256 signature of a compact JWS to (r, n-s).
func highS(t *testing.T, jws []byte) []byte {
	t.Helper()
	parts := strings.Split(string(jws), ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	flipped := new(big.Int).Sub(n, s).FillBytes(make([]byte, 32))
	out := append(append([]byte{}, sig[:32]...), flipped...)
	return []byte(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(out))
}
