package report

import (
	"context"
	"fmt"
	"sort"

	"github.com/certless/certless/translog"
)

// LeafReader reads n leaves of the log from index start.
type LeafReader func(ctx context.Context, start int64, n int) ([][]byte, error)

// maxDifferences bounds the mismatches a reconciliation names.
const maxDifferences = 10

// leafChunk is how many leaves one read asks for.
const leafChunk = 1000

// Reconcile ties the decisions of a report to the log: each decision with
// a leaf under the checkpoint is compared with its leaf read back (kind
// decision, agency, outcome, reason, query, time); and every decision leaf
// in the decisions' leaf range whose time is in the period and whose
// agency is in the filter must be one of the decisions. Decisions older
// than the log (no leaf) and leaves the checkpoint does not cover yet are
// counted apart. With no reader or checkpoint nothing is read and the
// report says it is not reconciled.
func Reconcile(ctx context.Context, ds []Decision, cp *Checkpoint, read LeafReader, keep func(agency string) bool, p Period) (Reconciliation, error) {
	rec := Reconciliation{Decisions: len(ds), Differences: []string{}}
	byIndex := map[int64]Decision{}
	for _, d := range ds {
		switch {
		case d.LeafIndex < 0:
			rec.Unlogged++
		case cp == nil || d.LeafIndex >= cp.Size:
			rec.Pending++
		default:
			rec.Logged++
			byIndex[d.LeafIndex] = d
		}
	}
	if cp == nil || read == nil {
		rec.Differences = append(rec.Differences, "no checkpoint: the figures are not tied to the log")
		return rec, nil
	}
	idx := make([]int64, 0, len(byIndex))
	for i := range byIndex {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	differ := func(format string, a ...any) {
		if len(rec.Differences) < maxDifferences {
			rec.Differences = append(rec.Differences, fmt.Sprintf(format, a...))
		}
	}
	if len(idx) > 0 {
		lo, hi := idx[0], idx[len(idx)-1]
		for start := lo; start <= hi; start += leafChunk {
			n := int(min(leafChunk, hi-start+1))
			leaves, err := read(ctx, start, n)
			if err != nil {
				return rec, fmt.Errorf("report: read leaves %d+%d: %w", start, n, err)
			}
			for k, raw := range leaves {
				i := start + int64(k)
				l, err := translog.ParseLeaf(raw)
				if err != nil {
					differ("leaf %d does not parse: %v", i, err)
					continue
				}
				d, mine := byIndex[i]
				if !mine {
					// A decision leaf of the period and filter that no
					// decision of the report stands for.
					if l.Kind == translog.KindDecision && keep(l.Agency) {
						if t, err := l.TimeOf(); err == nil && !t.Before(p.From) && t.Before(p.To) {
							rec.DecisionLeaves++
							differ("leaf %d is a decision of %s at %s the report does not count", i, l.Agency, l.Time)
						}
					}
					continue
				}
				rec.LeavesChecked++
				rec.DecisionLeaves++
				if l.Kind != translog.KindDecision || l.Agency != d.Agency || l.Outcome != d.Outcome || l.Reason != d.Reason || l.Query != d.Query {
					differ("leaf %d says %s %s/%s/%s/%s, the decision store %s/%s/%s/%s", i, l.Kind, l.Agency, l.Query, l.Outcome, l.Reason, d.Agency, d.Query, d.Outcome, d.Reason)
				}
			}
		}
	}
	rec.Reconciled = len(rec.Differences) == 0 && rec.LeavesChecked == rec.Logged && rec.DecisionLeaves == rec.Logged
	return rec, nil
}
