package residentid

import (
	"errors"
	"testing"
)

// FuzzResidentID: Validate never panics; an accepted number parses back to
// itself and carries its own checksum; a refusal is always an *Error of one
// known kind.
func FuzzResidentID(f *testing.F) {
	for _, s := range []string{"11010519491231002X", "220102199003071235", "220102199002301238", "11010519491231002x", "", "990102199003071235"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateAt(s, today)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %v", err)
			}
			n := 0
			for _, k := range []error{ErrLength, ErrCharacters, ErrRegion, ErrBirthDate, ErrCheckDigit} {
				if errors.Is(err, k) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%v matches %d kinds", err, n)
			}
			return
		}
		id, err := ParseAt(s, today)
		if err != nil {
			t.Fatal(err)
		}
		if id.String() != s || Checksum(s[:17]) != s[17] {
			t.Fatalf("%q round trips to %q", s, id.String())
		}
	})
}
