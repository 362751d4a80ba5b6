package exchange_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/certless/certless/exchange"
)

// FuzzVerify: what a receiver reads off the batches topic is untrusted.
// Verify never panics on any manifest and record, and accepts only the
// bytes the broker signed: a single changed byte anywhere is refused.
// ParseManifest never panics either. (Under -fuzz this target runs only a
// handful of inputs a second on this machine, cause unknown; `go test`
// runs its seeds every time.)
func FuzzVerify(f *testing.F) {
	w := newWorld(f)
	b, err := exchange.Build(context.Background(), w.feed, w.spec, "certless", w.key, w.set)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b.Manifest, b.Records[0])
	f.Add(b.Manifest[:len(b.Manifest)-1], b.Records[0])
	f.Add([]byte("a.b.c"), []byte("{}"))
	f.Fuzz(func(t *testing.T, manifest, record []byte) {
		_, _ = exchange.ParseManifest(manifest)
		v, err := exchange.Verify(manifest, [][]byte{record}, w.reg, w.set, 0)
		if err != nil {
			return
		}
		// The batch has more than one record: no single record completes
		// it, whatever the bytes, unless the manifest were forged.
		if len(b.Records) > 1 || !bytes.Equal(manifest, b.Manifest) || !bytes.Equal(record, b.Records[0]) {
			t.Fatalf("verified bytes the broker did not sign: %+v", v)
		}
	})
}
