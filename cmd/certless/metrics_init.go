package main

import (
	"maps"
	"slices"

	"github.com/certless/certless/directory"
)

// dockedAgencies are the agencies of snap, sorted: the agency label values
// whose series exist from the start (broker.Metrics.Init).
func dockedAgencies(snap *directory.Snapshot) []string {
	return slices.Sorted(maps.Keys(snap.Agencies))
}
