package keys

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestNewKeyID(t *testing.T) {
	at := time.Date(2026, 12, 1, 16, 15, 44, 999, time.FixedZone("CST", 8*3600))
	id, err := newKeyID(at, bytes.NewReader([]byte{0x3f, 0xa9, 0xc2}))
	if err != nil {
		t.Fatal(err)
	}
	if id != "k20261201T081544Z-3fa9c2" {
		t.Fatalf("id %q", id)
	}
	if _, err := newKeyID(at, bytes.NewReader(nil)); err == nil {
		t.Fatal("a failing random source must fail")
	}
	k, err := Generate("court-a", "", EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^k\d{8}T\d{6}Z-[0-9a-f]{6}$`).MatchString(k.KeyID) || CheckKeyID(k.KeyID) != nil {
		t.Fatalf("generated key id %q", k.KeyID)
	}
}

// TestNewestFirst: generated ids sort by creation time, and the older
// date-only ids sort before the time-stamped ids of the same or a later day.
func TestNewestFirst(t *testing.T) {
	want := []string{ // newest first
		"k20261202T000000Z-000000",
		"k20261202-000000", // date-only, a later day than all below
		"k20261201T081545Z-000000",
		"k20261201T081544Z-ffffff", // same second: the random part decides
		"k20261201T081544Z-3fa9c2",
		"k20261201T000000Z-000000",
		"k20261201-ffffff", // date-only, same day: before that day's timed ids
		"k20261130T235959Z-ffffff",
		"k20261118-3fa9c2",
	}
	pubs := make([]Public, len(want))
	for i, id := range want {
		pubs[i] = Public{Agency: "court-a", KeyID: id}
	}
	for range 20 {
		rand.Shuffle(len(pubs), func(i, j int) { pubs[i], pubs[j] = pubs[j], pubs[i] })
		newestFirst(pubs)
		got := make([]string, len(pubs))
		for i, p := range pubs {
			got[i] = p.KeyID
		}
		if !slices.Equal(got, want) {
			t.Fatalf("order\n got %q\nwant %q", got, want)
		}
	}
}

// TestNewestKeyAcrossIDForms: SigningKey and EncryptionKey pick a
// time-stamped id over a date-only one of the same day, and a date-only one
// of a later day over a time-stamped one.
func TestNewestKeyAcrossIDForms(t *testing.T) {
	now := time.Now()
	for _, c := range []struct{ older, newer string }{
		{"k20261118-ffffff", "k20261118T000001Z-000000"},
		{"k20261118T235959Z-ffffff", "k20261119-000000"},
	} {
		dir := t.TempDir()
		for _, id := range []string{c.newer, c.older} {
			for _, alg := range []Alg{EdDSA, ECDHES} {
				kid := id
				if alg == ECDHES {
					kid = "e" + id
				}
				if _, err := GenerateInDir(dir, "court-a", kid, alg); err != nil {
					t.Fatal(err)
				}
			}
		}
		k, err := SigningKey(dir, "court-a", now)
		if err != nil {
			t.Fatal(err)
		}
		if k.KeyID != c.newer {
			t.Errorf("SigningKey = %s, want %s", k.KeyID, c.newer)
		}
		reg, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := reg.EncryptionKey("court-a", now)
		if err != nil || p.KeyID != "e"+c.newer {
			t.Errorf("EncryptionKey = %v, %v; want e%s", p.KeyID, err, c.newer)
		}
	}
}
