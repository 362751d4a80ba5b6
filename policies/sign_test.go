package policies

import (
	"errors"
	"testing"
)

func TestSignVerifyBothParties(t *testing.T) {
	w := defaultWorld(t)
	doc := []byte(sampleDoc)
	a, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	sigs := w.cosign(doc, t0, "court-changchun", "police-jilin")
	if err := Verify(doc, sigs, w.reg, a); err != nil {
		t.Fatalf("%v\n%s", err, sigs)
	}
	one := w.cosign(doc, t0, "court-changchun")
	var e *Error
	if err := Verify(doc, one, w.reg, a); !errors.As(err, &e) || e.Reason != ReasonMissingParty {
		t.Fatalf("one party: %v", err)
	}
}
