package exchange_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certless/certless/exchange"
)

// TestVerifyStream: a receiver reading its batches topic accepts batches in
// sequence, a batch offered again (same bytes, duplicates of a part
// included), and leaves a batch without its manifest pending; it names a
// missing batch, a replayed old one, an altered copy of a part and a
// missing part.
func TestVerifyStream(t *testing.T) {
	w := newWorld(t)
	var batches []exchange.Batch
	for seq := 7; seq <= 9; seq++ {
		w.spec.Sequence = seq
		w.spec.From, w.spec.To = w.spec.From.AddDate(0, 1, 0), w.spec.To.AddDate(0, 1, 0)
		batches = append(batches, w.build(t))
	}
	if len(batches[0].Records) < 2 {
		t.Fatalf("the first batch has %d records; the test wants two", len(batches[0].Records))
	}
	parts := func(bs ...exchange.Batch) []exchange.Part {
		var out []exchange.Part
		for _, b := range bs {
			for i, r := range b.Records {
				out = append(out, exchange.Part{Batch: b.ID, Index: i, Value: r})
			}
			out = append(out, exchange.Part{Batch: b.ID, Index: -1, Value: b.Manifest})
		}
		return out
	}
	check := func(ps []exchange.Part, from int, want string) []exchange.StreamBatch {
		t.Helper()
		got, _, err := exchange.VerifyStream(ps, w.reg, w.set, from)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, exchange.ErrBatch)) {
			t.Fatalf("want %q, got %v", want, err)
		}
		return got
	}
	// In order, the first offered twice and half of it duplicated by a
	// crash, the last with its manifest still to come.
	ps := append(parts(batches[0])[:1], parts(batches[0], batches[0], batches[1])...)
	ps = append(ps, parts(batches[2])[:len(batches[2].Records)]...)
	got, pending, err := exchange.VerifyStream(ps, w.reg, w.set, 7)
	if err != nil || len(got) != 2 || got[0].Offers != 2 || got[1].Manifest.Sequence != 8 || len(pending) != 1 || pending[0] != batches[2].ID {
		t.Fatalf("stream: %d batches %+v pending %v err %v", len(got), got, pending, err)
	}
	check(parts(batches[0], batches[2]), 0, "batch 8 is missing")
	check(parts(batches[1]), 7, "batch 8; batch 7 is missing")
	check(parts(batches[0], batches[1], batches[0]), 0, "") // the same bytes again: offered again
	check(parts(batches[1]), 9, "batch 8 again, after 8 (a replayed old batch)")
	altered := parts(batches[0])
	dup := altered[0]
	dup.Value = append([]byte{}, dup.Value...)
	dup.Value[len(dup.Value)-3] ^= 1
	check(append(altered[:1:1], append([]exchange.Part{dup}, altered[1:]...)...), 0, "record 0 published again with other bytes")
	missing := parts(batches[0])[1:]
	check(missing, 0, "record 0 of")
}
