package feedback_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// memLeaves is an in-memory log.
type memLeaves struct {
	mu   sync.Mutex
	keys map[string]int64
}

func (m *memLeaves) AppendLeaf(_ context.Context, key string, _ []byte) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.keys[key]; ok {
		return i, nil
	}
	m.keys[key] = int64(len(m.keys))
	return m.keys[key], nil
}

// flakyProducer fails while down, else records what it publishes.
type flakyProducer struct {
	down bool
	got  []broker.Output
}

func (p *flakyProducer) Produce(_ context.Context, outs ...broker.Output) error {
	if p.down {
		return errors.New("kafka down")
	}
	p.got = append(p.got, outs...)
	return nil
}

// TestNotifierResendsTheSameNotice: a round whose publish fails sends
// nothing and marks nothing; the next round publishes the very notice
// signed the first time — the forwarded step to the agency and, with the
// agency's signed dispute, to the data owner — and a third round has
// nothing left to send.
func TestNotifierResendsTheSameNotice(t *testing.T) {
	ctx := context.Background()
	s, err := feedback.Open(ctx, filepath.Join(t.TempDir(), "decisions.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, _ := keys.Generate("certless", "k1", keys.EdDSA)
	reg, _ := keys.NewRegistry(k.Public)
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	d := sampleDispute(ulid.Make().String(), now)
	d.Receipt = schemas.MessageRef{ID: ulid.Make().String(), Digest: "sha256:" + hex64('a')}
	d.Digest = "sha256:" + hex64('b')
	if _, _, err := s.OpenDispute(ctx, d); err != nil {
		t.Fatal(err)
	}
	prod := &flakyProducer{down: true}
	n := &feedback.Notifier{Store: s, Keys: broker.StaticKey{Key: k}, Schemas: set, Leaves: &memLeaves{keys: map[string]int64{}},
		Producer: prod, Topics: broker.Topics{Prefix: "t."}, BrokerID: "certless", Now: func() time.Time { return now }}

	if err := n.Round(ctx); err == nil || !strings.Contains(err.Error(), "kafka down") {
		t.Fatalf("a round with Kafka down: %v", err)
	}
	evs, _ := s.Events(ctx, d.ID)
	if len(evs) != 2 || evs[1].Status != schemas.DisputeForwarded || evs[1].Notice == nil || !evs[1].SentAt.IsZero() {
		t.Fatalf("after the failed round: %+v", evs)
	}
	first := string(evs[1].Notice)

	prod.down = false
	if err := n.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if len(prod.got) != 2 {
		t.Fatalf("published %d messages, want the notice to the agency and the dispute to the owner", len(prod.got))
	}
	toAgency, toOwner := prod.got[0], prod.got[1]
	if toAgency.Topic != "t.notary-dunhua.receipts" || string(toAgency.Value) != first {
		t.Fatalf("to the agency: %s, same notice %v", toAgency.Topic, string(toAgency.Value) == first)
	}
	if toOwner.Topic != "t.police-jilin.disputes" || string(toOwner.Value) != string(d.Message) || toOwner.Headers[feedback.HeaderNotice] != first {
		t.Fatalf("to the owner: %s %q", toOwner.Topic, toOwner.Value)
	}
	v, err := envelope.VerifyOffline(toAgency.Value, reg, set)
	if err != nil || v.Type != schemas.TypeDisputeStatus {
		t.Fatalf("notice: %v %+v", err, v)
	}
	if err := n.Round(ctx); err != nil || len(prod.got) != 2 {
		t.Fatalf("a third round sent %d more, %v", len(prod.got)-2, err)
	}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
