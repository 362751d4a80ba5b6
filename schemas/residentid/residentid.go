// Package residentid validates and builds the 18-character resident
// identity number of GB 11643-1999 (公民身份号码).
//
// The number is: a 6-digit address (region) code, an 8-digit birth date
// YYYYMMDD, a 3-digit sequence (odd for men, even for women) and a check
// character computed with ISO 7064 MOD 11-2 over the first 17 digits, "X"
// standing for 10.
//
// What it promises: Validate accepts exactly the numbers whose region code
// has a real province prefix, whose birth date is a real calendar date
// between 1800-01-01 and today (China time), and whose check character is
// right, in canonical form (upper-case X). Every refusal is an *Error naming
// the part that is wrong, comparable with errors.Is to one of the Err*
// kinds. Nothing here consults a register: a valid number may still belong
// to nobody.
package residentid

import (
	"errors"
	"fmt"
	"time"
)

// Length is the number of characters of a resident ID number.
const Length = 18

// The kinds of refusal; an *Error matches exactly one with errors.Is.
var (
	ErrLength     = errors.New("must be 18 characters")
	ErrCharacters = errors.New("must be 17 digits followed by a digit or X")
	ErrRegion     = errors.New("region code has no valid province prefix")
	ErrBirthDate  = errors.New("birth date is not a real date between 1800-01-01 and today")
	ErrCheckDigit = errors.New("check character does not match")
)

// Error says what is wrong with a resident ID number.
type Error struct {
	// Part is "length", "characters", "region", "birth_date" or
	// "check_digit".
	Part string
	// Kind is one of the Err* values.
	Kind error
	// Detail adds what was found, e.g. "expected 7, got 3". It never
	// repeats the whole number, which is personal data.
	Detail string
}

func (e *Error) Error() string {
	s := "resident id: " + e.Part + ": " + e.Kind.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Is matches the error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Kind }

// China is the zone birth dates are read in (UTC+8, no DST).
var China = time.FixedZone("CST", 8*3600)

var weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const checkChars = "10X98765432"

// provinces are the GB/T 2260 province-level prefixes.
var provinces = map[string]bool{
	"11": true, "12": true, "13": true, "14": true, "15": true,
	"21": true, "22": true, "23": true,
	"31": true, "32": true, "33": true, "34": true, "35": true, "36": true, "37": true,
	"41": true, "42": true, "43": true, "44": true, "45": true, "46": true,
	"50": true, "51": true, "52": true, "53": true, "54": true,
	"61": true, "62": true, "63": true, "64": true, "65": true,
	"71": true, "81": true, "82": true,
}

// Checksum returns the check character ('0'-'9' or 'X') for the first 17
// digits of a number. It panics if first17 is not 17 ASCII digits.
func Checksum(first17 string) byte {
	if len(first17) != 17 {
		panic("residentid: Checksum needs 17 digits")
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			panic("residentid: Checksum needs 17 digits")
		}
		sum += int(c-'0') * weights[i]
	}
	return checkChars[sum%11]
}

// ValidRegion reports whether region is a 6-digit code with a real
// province prefix (the shape GB/T 2260 codes have).
func ValidRegion(region string) bool {
	if len(region) != 6 || !digits(region) {
		return false
	}
	return provinces[region[:2]]
}

// Validate checks id against today's date in China. See ValidateAt.
func Validate(id string) error { return ValidateAt(id, time.Now()) }

// ValidateAt checks id fully — length, characters, region shape, birth date
// not after now's date in China, check character — and returns an *Error
// for the first part that is wrong, in that order.
func ValidateAt(id string, now time.Time) error {
	if len(id) != Length {
		return &Error{Part: "length", Kind: ErrLength, Detail: fmt.Sprintf("got %d bytes", len(id))}
	}
	if !digits(id[:17]) {
		return &Error{Part: "characters", Kind: ErrCharacters, Detail: "non-digit in the first 17"}
	}
	last := id[17]
	if (last < '0' || last > '9') && last != 'X' {
		d := "last character is not a digit or X"
		if last == 'x' {
			d = "use upper-case X"
		}
		return &Error{Part: "characters", Kind: ErrCharacters, Detail: d}
	}
	if !ValidRegion(id[:6]) {
		return &Error{Part: "region", Kind: ErrRegion, Detail: "prefix " + id[:2]}
	}
	if _, err := birth(id[6:14], now); err != nil {
		return err
	}
	if want := Checksum(id[:17]); want != last {
		return &Error{Part: "check_digit", Kind: ErrCheckDigit, Detail: fmt.Sprintf("expected %c, got %c", want, last)}
	}
	return nil
}

// ID is a parsed, valid resident ID number.
type ID struct {
	Region string
	Birth  time.Time // midnight in China
	Seq    int       // 0-999
}

// Male reports whether the sequence is odd.
func (id ID) Male() bool { return id.Seq%2 == 1 }

// String returns the 18-character number.
func (id ID) String() string { return Make(id.Region, id.Birth, id.Seq) }

// Parse validates s (see Validate) and splits it into its parts.
func Parse(s string) (ID, error) { return ParseAt(s, time.Now()) }

// ParseAt is Parse with an explicit today.
func ParseAt(s string, now time.Time) (ID, error) {
	if err := ValidateAt(s, now); err != nil {
		return ID{}, err
	}
	b, _ := birth(s[6:14], now)
	seq := int(s[14]-'0')*100 + int(s[15]-'0')*10 + int(s[16]-'0')
	return ID{Region: s[:6], Birth: b, Seq: seq}, nil
}

// Make builds a valid number from a region code, a birth date (its calendar
// date in its own location: time.Date(1990, 3, 7, 0, 0, 0, 0, time.UTC) is
// 19900307) and a sequence 0-999 (odd for men, even for
// women), for synthetic records and tests. It panics when region is not
// ValidRegion or seq is out of range: those are programming errors.
func Make(region string, birth time.Time, seq int) string {
	if !ValidRegion(region) {
		panic(fmt.Sprintf("residentid: Make: bad region %q", region))
	}
	if seq < 0 || seq > 999 {
		panic(fmt.Sprintf("residentid: Make: sequence %d out of 0-999", seq))
	}
	s := fmt.Sprintf("%s%s%03d", region, birth.Format("20060102"), seq)
	return s + string(Checksum(s))
}

func birth(yyyymmdd string, now time.Time) (time.Time, error) {
	t, err := time.ParseInLocation("20060102", yyyymmdd, China)
	if err != nil || t.Format("20060102") != yyyymmdd {
		return time.Time{}, &Error{Part: "birth_date", Kind: ErrBirthDate, Detail: "not a calendar date"}
	}
	if t.Year() < 1800 {
		return time.Time{}, &Error{Part: "birth_date", Kind: ErrBirthDate, Detail: "before 1800"}
	}
	if yyyymmdd > now.In(China).Format("20060102") {
		return time.Time{}, &Error{Part: "birth_date", Kind: ErrBirthDate, Detail: "in the future"}
	}
	return t, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
