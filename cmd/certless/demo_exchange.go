package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/certless/certless/client"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/schemas"
)

// demoRecipient is the recipient of the sample schedule.
const demoRecipient = "social-security-baicheng"

// exchangeScenario is the periodic exchange as its recipient sees it: the
// broker's scheduler has published the daily batches of Baicheng's hukou
// cancellations; the recipient reads its batches topic and verifies every
// batch (signatures, count, digest, Merkle root, no gap), and a copy of one
// record changed by one byte is refused, naming the record.
func exchangeScenario(ctx context.Context, svc *service) []*demoCase {
	verified := &demoCase{agency: demoRecipient, label: "periodic exchange: the daily batches of hukou cancellations on its batches topic, checked as the receiver does", want: "verified"}
	altered := &demoCase{agency: demoRecipient, label: "the same batches with one record changed by one byte", want: "refused, naming the record"}
	cases := []*demoCase{verified, altered}
	if svc.scheduler == nil {
		verified.got, altered.got = "exchange disabled", "exchange disabled"
		return cases
	}
	// The scheduler's first round, which runs at start, publishes them.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		sums, err := svc.batches.Summaries(ctx, time.Now(), time.Hour)
		if err == nil && len(sums) > 0 && sums[0].Last > 0 && sums[0].Unsent == 0 {
			break
		}
		select {
		case <-ctx.Done():
			verified.got, altered.got = fmt.Sprintf("no batch published (%v)", err), "-"
			return cases
		case <-tick.C:
		}
	}
	recs, err := client.ReadTopic(ctx, svc.kafka, svc.topics.Batches(demoRecipient), 0, maxTopicParts)
	if err != nil {
		verified.got, altered.got = err.Error(), "-"
		return cases
	}
	parts, err := batchParts(recs)
	if err != nil {
		verified.got, altered.got = err.Error(), "-"
		return cases
	}
	first := slices.IndexFunc(parts, func(p exchange.Part) bool { return p.Index >= 0 })
	set, _ := schemas.Default()
	bs, _, err := exchange.VerifyStream(parts, svc.keys, set, 0)
	switch {
	case err != nil:
		verified.got = err.Error()
	case len(bs) == 0:
		verified.got = "no batch"
	default:
		n := 0
		for _, b := range bs {
			n += b.Manifest.Count
		}
		verified.got = fmt.Sprintf("verified (%d batches, sequences %d–%d, %d records)", len(bs), bs[0].Manifest.Sequence, bs[len(bs)-1].Manifest.Sequence, n)
		verified.ok = true
	}
	if first < 0 {
		altered.got = "no record to change"
		return cases
	}
	bad := append([]byte{}, parts[first].Value...)
	bad[len(bad)/2] ^= 1
	parts[first].Value = bad
	if _, _, err := exchange.VerifyStream(parts, svc.keys, set, 0); err != nil {
		altered.got = "refused: " + err.Error()
		altered.ok = true
	} else {
		altered.got = "ACCEPTED"
	}
	return cases
}
