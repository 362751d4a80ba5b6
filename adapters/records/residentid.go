package records

import "strconv"

var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const idCheckChars = "10X98765432"

// checkDigit returns the GB 11643-1999 (ISO 7064 MOD 11-2) check character
// for the first 17 digits of a resident ID number.
func checkDigit(first17 string) byte {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * idWeights[i]
	}
	return idCheckChars[sum%11]
}

// validID reports whether id is 18 characters, 17 digits and the right check
// character (upper-case X).
func validID(id string) bool {
	if len(id) != 18 {
		return false
	}
	for i := 0; i < 17; i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return id[17] == checkDigit(id[:17])
}

// makeID builds an ID number from a region code, a birth date (YYYYMMDD) and
// a three-digit sequence (odd for men, even for women).
func makeID(region, yyyymmdd string, seq int) string {
	s := region + yyyymmdd
	q := strconv.Itoa(seq)
	for len(q) < 3 {
		q = "0" + q
	}
	s += q
	return s + string(checkDigit(s))
}
