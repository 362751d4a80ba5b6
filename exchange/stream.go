package exchange

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
)

// Part is one message of a batches topic as a receiver reads it: the batch
// id and index of its headers (Index -1: the manifest) and its bytes.
type Part struct {
	Batch string
	Index int
	Value []byte
}

// StreamBatch is one batch of a verified stream.
type StreamBatch struct {
	Verified
	ID string
	// ManifestJWS is the signed manifest as published.
	ManifestJWS []byte
	// Offers is how many times its manifest was published (more than one:
	// offered again, the same bytes).
	Offers int
}

// VerifyStream checks what a receiver read from its batches topic, in
// topic order: every batch with a manifest verifies (Verify), a part
// published again carries the same bytes, and per schedule the batches'
// sequence numbers run on without a gap or a step back — starting at
// from when from is above 0 (the next sequence the receiver expects). A
// batch whose manifest has not arrived yet is left out (Pending). The
// error names the batch and the first part that fails.
func VerifyStream(parts []Part, resolver envelope.KeyResolver, set *schemas.Set, from int) (batches []StreamBatch, pending []string, err error) {
	type acc struct {
		records  map[int][]byte
		manifest []byte
		done     bool
		offers   int
	}
	byID := map[string]*acc{}
	var order []string
	next := map[string]int{} // schedule → next sequence
	for n, p := range parts {
		a := byID[p.Batch]
		if a == nil {
			a = &acc{records: map[int][]byte{}}
			byID[p.Batch] = a
			order = append(order, p.Batch)
		}
		if p.Index >= 0 {
			if old, ok := a.records[p.Index]; ok {
				if !bytes.Equal(old, p.Value) {
					return batches, nil, fmt.Errorf("%w: batch %s record %d published again with other bytes (message %d)", ErrBatch, p.Batch, p.Index, n)
				}
				continue
			}
			if a.done {
				return batches, nil, fmt.Errorf("%w: batch %s record %d arrived after its verified manifest (message %d)", ErrBatch, p.Batch, p.Index, n)
			}
			a.records[p.Index] = p.Value
			continue
		}
		if a.manifest != nil {
			if !bytes.Equal(a.manifest, p.Value) {
				return batches, nil, fmt.Errorf("%w: batch %s manifest published again with other bytes (message %d)", ErrBatch, p.Batch, n)
			}
			a.offers++
			for i := range batches {
				if batches[i].ID == p.Batch {
					batches[i].Offers = a.offers
				}
			}
			continue
		}
		idx := make([]int, 0, len(a.records))
		for i := range a.records {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		recs := make([][]byte, 0, len(idx))
		for _, i := range idx {
			recs = append(recs, a.records[i])
		}
		v, err := verify(p.Value, recs, resolver, set, 0, func(n int) string { return fmt.Sprintf("record %d (as published)", idx[n]) })
		if err != nil {
			return batches, nil, fmt.Errorf("batch %s: %w", p.Batch, err)
		}
		want, seen := next[v.Stream]
		if !seen && from > 0 {
			want, seen = from, true
		}
		switch {
		case seen && v.Manifest.Sequence < want:
			return batches, nil, fmt.Errorf("%w: batch %s is %s batch %d again, after %d (a replayed old batch)", ErrBatch, p.Batch, v.Stream, v.Manifest.Sequence, want-1)
		case seen && v.Manifest.Sequence > want:
			return batches, nil, fmt.Errorf("%w: batch %s is %s batch %d; batch %d is missing", ErrBatch, p.Batch, v.Stream, v.Manifest.Sequence, want)
		}
		next[v.Stream] = v.Manifest.Sequence + 1
		a.manifest, a.done, a.offers = p.Value, true, 1
		batches = append(batches, StreamBatch{Verified: v, ID: p.Batch, ManifestJWS: p.Value, Offers: 1})
	}
	for _, id := range order {
		if !byID[id].done {
			pending = append(pending, id)
		}
	}
	return batches, pending, nil
}
