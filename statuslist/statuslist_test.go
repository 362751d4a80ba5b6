package statuslist_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/statuslist"
)

func TestBitsOrderAndEncoding(t *testing.T) {
	b := statuslist.NewBits()
	if len(b)*8 != statuslist.Size || statuslist.Size != 131072 {
		t.Fatalf("a list has %d bits", len(b)*8)
	}
	for _, i := range []int{0, 9, statuslist.Size - 1} {
		b.Set(i)
	}
	// Bit 0 is the most significant bit of the first byte.
	if b[0] != 0x80 || b[1] != 0x40 || b[len(b)-1] != 0x01 {
		t.Fatalf("bytes %x %x … %x", b[0], b[1], b[len(b)-1])
	}
	enc := b.Encode()
	if !strings.HasPrefix(enc, "u") || strings.ContainsAny(enc, "=+/") {
		t.Fatalf("encodedList %q is not multibase base64url without padding", enc[:10])
	}
	z, err := base64.RawURLEncoding.DecodeString(enc[1:])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gzip.NewReader(bytes.NewReader(z)); err != nil {
		t.Fatalf("not GZIP: %v", err)
	}
	back, err := statuslist.Decode(enc)
	if err != nil || !bytes.Equal(back, b) {
		t.Fatalf("decode: %v", err)
	}
	for i, want := range map[int]bool{0: true, 1: false, 9: true, statuslist.Size - 1: true, statuslist.Size: false, -1: false} {
		if back.Get(i) != want {
			t.Errorf("bit %d: %v", i, !want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	gz := func(n int) string {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(make([]byte, n))
		_ = w.Close()
		return "u" + base64.RawURLEncoding.EncodeToString(z.Bytes())
	}
	for name, enc := range map[string]string{
		"no multibase prefix": statuslist.NewBits().Encode()[1:],
		"not base64url":       "u!!!",
		"not gzip":            "u" + base64.RawURLEncoding.EncodeToString([]byte("plain")),
		"too short a list":    gz(1024),
		"a zip bomb":          gz(17 << 20),
	} {
		if _, err := statuslist.Decode(enc); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestCredentialSignCheckOpen(t *testing.T) {
	k, err := keys.Generate("certless", "k1", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := keys.NewRegistry(k.Public)
	base := "http://127.0.0.1:8080/status"
	revokedAt := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	// Index 131075 is bit 3 of list 1.
	e := statuslist.NewEntry(base, statuslist.Size+3)
	if e.StatusListCredential != base+"/1" || e.StatusListIndex != "3" || e.ID != base+"/1#3" {
		t.Fatalf("entry %+v", e)
	}
	c, err := statuslist.NewCredential(e.StatusListCredential, statuslist.Issuer("certless"), revokedAt, []statuslist.Revoked{{Index: 3, Reason: "corrected", Dispute: "01KD", At: revokedAt}})
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := statuslist.Sign(k, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := statuslist.Open(jwt, reg)
	if err != nil {
		t.Fatal(err)
	}
	chk, err := got.Check(e)
	if err != nil || !chk.Revoked || chk.Why.Dispute != "01KD" || chk.Why.Reason != "corrected" || !chk.AsOf.Equal(revokedAt) {
		t.Fatalf("check %+v %v", chk, err)
	}
	other := statuslist.NewEntry(base, statuslist.Size+4)
	if chk, err := got.Check(other); err != nil || chk.Revoked {
		t.Fatalf("an entry not revoked: %+v %v", chk, err)
	}
	if _, err := got.Check(statuslist.NewEntry(base, 3)); err == nil {
		t.Error("list 1 answered for an entry of list 0")
	}
	// Tampered: one byte of the payload changed.
	parts := strings.Split(string(jwt), ".")
	parts[1] = parts[1][:10] + string("AB"[0]^parts[1][10]&1) + parts[1][11:]
	if _, err := statuslist.Open([]byte(strings.Join(parts, ".")), reg); err == nil {
		t.Error("a tampered credential opened")
	}
	stranger, _ := keys.Generate("certless", "k2", keys.EdDSA)
	forged, _ := statuslist.Sign(stranger, c)
	if _, err := statuslist.Open(forged, reg); err == nil {
		t.Error("a credential signed by an unknown key opened")
	}
}
