package exchange_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

type world struct {
	feed adapters.ChangeFeed
	ds   *records.Dataset
	key  *keys.Private
	reg  *keys.Registry
	set  *schemas.Set
	spec exchange.Spec
}

func newWorld(t testing.TB) world {
	t.Helper()
	ds := records.Generate(1, 3000)
	key, _ := keys.Generate("certless", "k1", keys.EdDSA)
	reg, _ := keys.NewRegistry(key.Public)
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	// A year of the province's cancellations, as a social security bureau
	// receives them.
	to := records.Snapshot
	spec := exchange.Spec{
		Agreement: schemas.AgreementRef{ID: "social-security-baicheng/cancellations", Version: 1, Digest: "sha256:" + strings.Repeat("ab", 32)},
		Schedule:  "daily", Recipient: "social-security-baicheng", Type: adapters.QueryHukouCancellation, Region: "220000",
		From: to.AddDate(-1, 0, 0), To: to, Sequence: 7, Fields: []string{"cancelled", "reason", "date", "as_of"}, Purpose: "pension-eligibility",
	}
	return world{feed: records.NewSource("provincial", records.NewMemory(ds), nil), ds: ds, key: key, reg: reg, set: set, spec: spec}
}

func (w world) build(t *testing.T) exchange.Batch {
	t.Helper()
	b, err := exchange.Build(context.Background(), w.feed, w.spec, "certless", w.key, w.set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildIsTheRecordsOfThePeriodAndDeterministic: a batch carries exactly
// the period's cancellations, minimised to the agreement's fields, and
// building it again gives the same bytes.
func TestBuildIsTheRecordsOfThePeriodAndDeterministic(t *testing.T) {
	w := newWorld(t)
	b := w.build(t)
	want := 0
	for _, p := range w.ds.Persons {
		if p.CancelReason != "" && !p.CancelDate.Add(-8*time.Hour).Before(w.spec.From) && p.CancelDate.Add(-8*time.Hour).Before(w.spec.To) {
			want++
		}
	}
	if want == 0 || len(b.Records) != want {
		t.Fatalf("%d records, the period holds %d cancellations", len(b.Records), want)
	}
	v, err := exchange.Verify(b.Manifest, b.Records, w.reg, w.set, 7)
	if err != nil {
		t.Fatal(err)
	}
	if v.Manifest.Count != want || v.Manifest.Sequence != 7 || !strings.HasPrefix(v.Manifest.MerkleRoot, "sha256:") {
		t.Fatalf("manifest %+v", v.Manifest)
	}
	for _, r := range v.Records {
		if r.Data["cancelled"] != true {
			t.Fatalf("record %d: %v", r.Index, r.Data)
		}
		for k := range r.Data {
			if k != "cancelled" && k != "reason" && k != "date" && k != "as_of" {
				t.Fatalf("record %d carries %s, not agreed", r.Index, k)
			}
		}
	}
	again := w.build(t)
	if !bytes.Equal(again.Manifest, b.Manifest) || again.ID != b.ID || len(again.Records) != len(b.Records) {
		t.Fatal("building the same period again changed the manifest")
	}
	for i := range b.Records {
		if !bytes.Equal(again.Records[i], b.Records[i]) {
			t.Fatalf("record %d changed on a re-run", i)
		}
	}
	next := w.spec
	next.Sequence = 8
	if other, _ := exchange.Build(context.Background(), w.feed, next, "certless", w.key, w.set); other.ID == b.ID {
		t.Fatal("two sequences share a batch id")
	}
}

// TestVerifyNamesWhatIsWrong: a receiver's verification names the missing
// part, the altered part (even re-signed by the broker's key), a part of
// another batch, and a replayed old batch.
func TestVerifyNamesWhatIsWrong(t *testing.T) {
	w := newWorld(t)
	b := w.build(t)
	if len(b.Records) < 4 {
		t.Fatalf("only %d records", len(b.Records))
	}
	check := func(name string, records [][]byte, manifest []byte, seq int, want string) {
		t.Helper()
		_, err := exchange.Verify(manifest, records, w.reg, w.set, seq)
		if !errors.Is(err, exchange.ErrBatch) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, want)
		}
	}
	missing := append(append([][]byte{}, b.Records[:2]...), b.Records[3:]...)
	check("a missing part", missing, b.Manifest, 7, "record 2 of")

	tampered := append([][]byte{}, b.Records...)
	tampered[1] = append([]byte(nil), b.Records[1]...)
	tampered[1][len(tampered[1])/2] ^= 1
	check("a changed byte", tampered, b.Manifest, 7, "part 1")

	// Re-signed by the broker's own key with other data: the signature
	// holds, the digest and the root do not.
	resigned := append([][]byte{}, b.Records...)
	v, err := envelope.VerifyOffline(b.Records[3], w.reg, w.set)
	if err != nil {
		t.Fatal(err)
	}
	var r exchange.Record
	_ = json.Unmarshal(v.Body, &r)
	if r.Data["reason"] == "emigration" {
		r.Data["reason"] = "death"
	} else {
		r.Data["reason"] = "emigration"
	}
	body, _ := json.Marshal(r)
	p := v.Payload
	p.Body = body
	if resigned[3], err = envelope.Sign(w.key, p); err != nil {
		t.Fatal(err)
	}
	check("an altered record", resigned, b.Manifest, 7, "digest")

	check("a replayed old batch", b.Records, b.Manifest, 8, "expected 8")

	next := w.spec
	next.Sequence = 8
	other, err := exchange.Build(context.Background(), w.feed, next, "certless", w.key, w.set)
	if err != nil {
		t.Fatal(err)
	}
	mixed := append([][]byte{}, b.Records...)
	mixed[0] = other.Records[0]
	check("a part of another batch", mixed, b.Manifest, 7, "batch 8")
}

// BenchmarkBuild: a batch of ten years of a province's cancellations from
// the reference source (records signed, minimised, digested, Merkle root).
func BenchmarkBuild(b *testing.B) {
	w := newWorld(b)
	w.spec.From = w.spec.To.AddDate(-10, 0, 0)
	first, err := exchange.Build(context.Background(), w.feed, w.spec, "certless", w.key, w.set)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := exchange.Build(context.Background(), w.feed, w.spec, "certless", w.key, w.set); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(first.Records)), "records/batch")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(first.Records))/1e3, "µs/record")
}
