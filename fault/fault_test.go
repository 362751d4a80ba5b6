package fault_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/certless/certless/fault"
)

func TestClassification(t *testing.T) {
	base := errors.New("boom")
	perm := fault.Permanent("invalid_query", base)
	cases := []struct {
		name   string
		err    error
		kind   fault.Kind
		reason string
	}{
		{"nil", nil, fault.TransientKind, ""},
		{"unclassified", base, fault.TransientKind, ""},
		{"context deadline", context.DeadlineExceeded, fault.TransientKind, ""},
		{"permanent", perm, fault.PermanentKind, "invalid_query"},
		{"wrapped permanent", fmt.Errorf("source x: %w", perm), fault.PermanentKind, "invalid_query"},
		{"transient over permanent", fault.Transient(fmt.Errorf("retry: %w", perm)), fault.TransientKind, ""},
		{"permanentf", fault.Permanentf("answer_invalid", "field %q: %w", "x", base), fault.PermanentKind, "answer_invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := fault.KindOf(c.err); got != c.kind {
				t.Errorf("KindOf = %v, want %v", got, c.kind)
			}
			if got := fault.ReasonOf(c.err); got != c.reason {
				t.Errorf("ReasonOf = %q, want %q", got, c.reason)
			}
			if got := fault.IsPermanent(c.err); got != (c.kind == fault.PermanentKind) {
				t.Errorf("IsPermanent = %v", got)
			}
		})
	}
	if !errors.Is(fmt.Errorf("x: %w", perm), base) {
		t.Error("a classified error must keep its cause for errors.Is")
	}
}

func ExampleKindOf() {
	err := fmt.Errorf("source jilin: %w", fault.Permanentf("invalid_query", "kinship needs two different persons"))
	fmt.Println(fault.KindOf(err), fault.ReasonOf(err))
	fmt.Println(fault.KindOf(errors.New("connection refused")))
	// Output:
	// permanent invalid_query
	// transient
}
