package envelope

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// now is the fixed clock of the tests.
var now = time.Date(2026, 11, 18, 9, 30, 0, 0, time.UTC)

// world is a small key registry: agency court-a with an EdDSA, an ES256, a
// revoked and an encryption key; court-b with one EdDSA key; the broker.
type world struct {
	reg                     *keys.Registry
	ed, es, revoked, enc, b *keys.Private
	broker                  *keys.Private
}

func newWorld(t testing.TB) *world {
	t.Helper()
	gen := func(agency, id string, alg keys.Alg) *keys.Private {
		k, err := keys.Generate(agency, id, alg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	w := &world{
		ed:      gen("court-a", "k1", keys.EdDSA),
		es:      gen("court-a", "k2", keys.ES256),
		revoked: gen("court-a", "k0", keys.EdDSA),
		enc:     gen("court-a", "e1", keys.ECDHES),
		b:       gen("court-b", "k1", keys.EdDSA),
		broker:  gen("certless", "r1", keys.EdDSA),
	}
	w.revoked.RevokedAt = now.Add(-time.Hour)
	reg, err := keys.NewRegistry(w.ed.Public, w.es.Public, w.revoked.Public, w.enc.Public, w.b.Public, w.broker.Public)
	if err != nil {
		t.Fatal(err)
	}
	w.reg = reg
	return w
}

// countingResolver records whether a key was looked up.
type countingResolver struct {
	KeyResolver
	n atomic.Int64
}

func (c *countingResolver) Lookup(kid string) (keys.Public, bool) {
	c.n.Add(1)
	return c.KeyResolver.Lookup(kid)
}

// verifier returns a Verifier of w with the test clock.
func (w *world) verifier() *Verifier {
	set, err := schemas.Default()
	if err != nil {
		panic(err)
	}
	return &Verifier{Keys: w.reg, Schemas: set, Now: func() time.Time { return now }}
}

// request returns a valid verification_request payload from court-a.
func request() Payload {
	return Payload{
		Type:      schemas.TypeVerificationRequest,
		ID:        ulid.MustNew(ulid.Timestamp(now), strings.NewReader(strings.Repeat("x", 16))).String(),
		Agency:    "court-a",
		IssuedAt:  now.Add(-time.Minute),
		ExpiresAt: now.Add(14 * time.Minute),
		Purpose:   Purpose{Basis: "notarisation", CaseRef: "(2026)长证字第1234号"},
		Body:      json.RawMessage(`{"query":"identity","subject":{"id_number":"220102199003071235","name":"张伟"}}`),
	}
}

// receipt returns a valid receipt payload from the broker.
func receipt(t testing.TB, req []byte) Payload {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"request_id": request().ID, "request_digest": DigestOf(req), "request_agency": "court-a",
		"query": "identity", "decision": "answered",
		"answer":    map[string]any{"as_of": now.Format(time.RFC3339), "id_name_match": true, "status": "active"},
		"agreement": map[string]any{"id": "allowlist/court-a", "digest": DigestOf([]byte("a"))},
	})
	return Payload{
		Type: schemas.TypeReceipt, ID: ulid.MustNew(ulid.Timestamp(now), strings.NewReader(strings.Repeat("y", 16))).String(),
		Agency: "certless", IssuedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour),
		Purpose: Purpose{Basis: "notarisation", CaseRef: "(2026)长证字第1234号"}, Body: body,
	}
}

func mustSign(t testing.TB, k *keys.Private, p Payload) []byte {
	t.Helper()
	b, err := Sign(k, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge builds a compact JWS from a raw header and payload and a dummy
// signature, for inputs no honest signer produces.
func forge(header, payload string) []byte {
	e := base64.RawURLEncoding.EncodeToString
	return []byte(e([]byte(header)) + "." + e([]byte(payload)) + "." + e([]byte("not a signature")))
}

func reasonOf(t testing.TB, err error) Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %T %v", err, err)
	}
	return e.Reason
}
