package residentid

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var today = time.Date(2026, 11, 18, 12, 0, 0, 0, China)

func TestValidate(t *testing.T) {
	cases := []struct {
		id   string
		kind error
	}{
		{"220102199003071235", nil},
		{"222403196211300427", nil},
		{"11010519491231002X", nil}, // the standard's own example
		{"110105194912310021", ErrCheckDigit},
		{"11010519491231002x", ErrCharacters},
		{"22010219900307123", ErrLength},
		{"2201021990030712355", ErrLength},
		{"", ErrLength},
		{"22010219900307A235", ErrCharacters},
		{"2201021990030712３5", ErrLength}, // full-width digit: more bytes
		{"990102199003071235", ErrRegion},
		{"000000199003071235", ErrRegion},
		{"220102199002301238", ErrBirthDate}, // 30 February
		{"220102179901011235", ErrBirthDate}, // before 1800
		{"220102202611190000", ErrBirthDate}, // tomorrow
		{"220102000000001235", ErrBirthDate},
	}
	for _, c := range cases {
		err := ValidateAt(c.id, today)
		if c.kind == nil {
			if err != nil {
				t.Errorf("%s: %v", c.id, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, c.kind) {
			t.Errorf("%s: got %v, want %v", c.id, err, c.kind)
		}
	}
}

func TestBornToday(t *testing.T) {
	id := Make("220582", today, 1)
	if err := ValidateAt(id, today); err != nil {
		t.Fatal(err)
	}
	// 23:30 UTC on the 17th is already the 18th in China.
	if err := ValidateAt(id, time.Date(2026, 11, 17, 23, 30, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAt(id, time.Date(2026, 11, 17, 15, 30, 0, 0, time.UTC)); !errors.Is(err, ErrBirthDate) {
		t.Fatalf("born tomorrow: %v", err)
	}
}

func TestMakeParseRoundTrip(t *testing.T) {
	birth := time.Date(1985, 2, 28, 0, 0, 0, 0, China)
	for seq := 0; seq < 1000; seq += 37 {
		s := Make("222403", birth, seq)
		id, err := ParseAt(s, today)
		if err != nil {
			t.Fatal(err)
		}
		if id.Region != "222403" || !id.Birth.Equal(birth) || id.Seq != seq || id.Male() != (seq%2 == 1) || id.String() != s {
			t.Fatalf("%s -> %+v", s, id)
		}
	}
}

func TestErrorNamesPartWithoutNumber(t *testing.T) {
	err := ValidateAt("110105194912310021", today)
	if err.Error() != "resident id: check_digit: check character does not match (expected X, got 1)" {
		t.Fatal(err)
	}
}

func TestMakePanicsOnBadInput(t *testing.T) {
	for _, f := range []func(){
		func() { Make("99", today, 1) },
		func() { Make("220102", today, 1000) },
		func() { Checksum("123") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

func ExampleValidate() {
	fmt.Println(Validate("11010519491231002X"))
	fmt.Println(Validate("110105194912310021"))
	fmt.Println(Validate("110105194902301234"))
	// Output:
	// <nil>
	// resident id: check_digit: check character does not match (expected X, got 1)
	// resident id: birth_date: birth date is not a real date between 1800-01-01 and today (not a calendar date)
}

func ExampleMake() {
	fmt.Println(Make("220102", time.Date(1990, 3, 7, 0, 0, 0, 0, China), 123))
	// Output: 220102199003071235
}

func ExampleChecksum() {
	fmt.Printf("%c\n", Checksum("11010519491231002"))
	// Output: X
}
