package broker

import (
	"slices"

	"github.com/certless/certless/adapters"
)

// Minimise returns only the fields of an answer of query type t that both
// the type documents (t.Fields(), the receipt schema's set) and the
// authorisation allows. A nil allow-list allows every documented field; an
// empty non-nil one allows none. Whatever else a source returned is
// dropped. The input map is not modified.
func Minimise(t adapters.QueryType, fields map[string]any, allowed []string) map[string]any {
	documented := t.Fields()
	out := make(map[string]any, len(documented))
	for _, k := range documented {
		if allowed != nil && !slices.Contains(allowed, k) {
			continue
		}
		if v, ok := fields[k]; ok {
			out[k] = v
		}
	}
	return out
}
