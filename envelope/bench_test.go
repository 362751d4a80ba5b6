package envelope

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/schemas"
)

// request1K is a kinship request whose compact JWS is about 1 KiB.
func request1K() Payload {
	p := request()
	p.Purpose = Purpose{Basis: "notarisation", CaseRef: "(2026)长证字第1234号/" + strings.Repeat("x", 80)}
	p.Body = json.RawMessage(`{"query":"kinship","subject":{"id_number":"220102199003071235","name":"` + strings.Repeat("张", 30) +
		`"},"related_subject":{"id_number":"222403196211300427","name":"` + strings.Repeat("秀", 30) + `"},"as_of":"2026-11-18T00:00:00+08:00"}`)
	return p
}

func benchRaw(b *testing.B, w *world) []byte {
	raw := mustSign(b, w.ed, request1K())
	if n := len(raw); n < 900 || n > 1200 {
		b.Fatalf("request is %d bytes, want about 1 KiB", n)
	}
	return raw
}

func BenchmarkSign(b *testing.B) {
	w := newWorld(b)
	for _, k := range []struct {
		name string
		fn   func() error
	}{
		{"EdDSA", func() error { _, err := Sign(w.ed, request1K()); return err }},
		{"ES256", func() error { _, err := Sign(w.es, request1K()); return err }},
	} {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := k.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifySignature is parse + signature check alone (go-jose).
func BenchmarkVerifySignature(b *testing.B) {
	w := newWorld(b)
	raw := string(benchRaw(b, w))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(raw, AllowedAlgs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(w.ed.Key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSchemaValidate(b *testing.B) {
	set, err := schemas.Default()
	if err != nil {
		b.Fatal(err)
	}
	doc, _ := json.Marshal(request1K())
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if err := set.Validate("verification_request.v1", doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the full ordered check of a 1 KiB request.
func BenchmarkVerify(b *testing.B) {
	w := newWorld(b)
	raw := benchRaw(b, w)
	v := w.verifier()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	w := newWorld(b)
	raw := benchRaw(b, w)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncryptTo(raw, w.enc.Public); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	w := newWorld(b)
	sealed, err := EncryptTo(benchRaw(b, w), w.enc.Public)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decrypt(sealed, w.enc); err != nil {
			b.Fatal(err)
		}
	}
}
