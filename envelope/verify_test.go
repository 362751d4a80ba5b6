package envelope

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
)

// TestReasons has one input per reason code that triggers exactly that
// reason: every other property of the input is valid.
func TestReasons(t *testing.T) {
	w := newWorld(t)
	valid := request()
	validRaw := mustSign(t, w.ed, valid)
	payloadJSON, _ := json.Marshal(valid)

	cases := []struct {
		reason  Reason
		name    string
		raw     func() []byte
		pointer string
		noKey   bool // the key must not even be looked up
	}{
		{reason: ReasonTooLarge, name: "over 256 KiB", noKey: true, raw: func() []byte {
			return append(append([]byte{}, validRaw...), make([]byte, DefaultMaxBytes)...)
		}},
		{reason: ReasonMalformed, name: "two parts", noKey: true, raw: func() []byte { return []byte("eyJhbGciOiJFZERTQSJ9.e30") }},
		{reason: ReasonMalformed, name: "header not JSON", noKey: true, raw: func() []byte { return forge("alg=EdDSA", string(payloadJSON)) }},
		{reason: ReasonMalformed, name: "payload not an object", noKey: true, raw: func() []byte {
			return forge(`{"alg":"EdDSA","kid":"court-a/k1"}`, `[1,2]`)
		}},
		{reason: ReasonMalformed, name: "padding in base64", noKey: true, raw: func() []byte {
			p := strings.SplitN(string(validRaw), ".", 3)
			return []byte(p[0] + "=." + p[1] + "." + p[2])
		}},
		{reason: ReasonMalformed, name: "crit header", noKey: true, raw: func() []byte {
			return forge(`{"alg":"EdDSA","kid":"court-a/k1","crit":["exp"],"exp":1}`, string(payloadJSON))
		}},
		{reason: ReasonAlgNotAllowed, name: "none", noKey: true, raw: func() []byte {
			return []byte(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"court-a/k1"}`)) + "." +
				base64.RawURLEncoding.EncodeToString(payloadJSON) + ".")
		}},
		{reason: ReasonAlgNotAllowed, name: "HS256", noKey: true, raw: func() []byte { return forge(`{"alg":"HS256","kid":"court-a/k1"}`, string(payloadJSON)) }},
		{reason: ReasonAlgNotAllowed, name: "RS256", noKey: true, raw: func() []byte { return forge(`{"alg":"RS256","kid":"court-a/k1"}`, string(payloadJSON)) }},
		{reason: ReasonAlgNotAllowed, name: "Ed25519 spelled differently", noKey: true, raw: func() []byte { return forge(`{"alg":"eddsa","kid":"court-a/k1"}`, string(payloadJSON)) }},
		{reason: ReasonUnknownKey, name: "unknown kid", raw: func() []byte { return forge(`{"alg":"EdDSA","kid":"court-a/nope"}`, string(payloadJSON)) }},
		{reason: ReasonUnknownKey, name: "no kid", raw: func() []byte { return forge(`{"alg":"EdDSA"}`, string(payloadJSON)) }},
		{reason: ReasonUnknownKey, name: "encryption key as kid", raw: func() []byte { return forge(`{"alg":"ES256","kid":"court-a/e1"}`, string(payloadJSON)) }},
		{reason: ReasonSignatureInvalid, name: "payload changed after signing", raw: func() []byte {
			p := strings.SplitN(string(validRaw), ".", 3)
			other := valid
			other.Purpose.CaseRef = "someone else's case"
			b, _ := json.Marshal(other)
			return []byte(p[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + p[2])
		}},
		{reason: ReasonSignatureInvalid, name: "kid of an ES256 key on an EdDSA signature", raw: func() []byte {
			p := strings.SplitN(string(validRaw), ".", 3)
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"court-a/k2"}`))
			return []byte(h + "." + p[1] + "." + p[2])
		}},
		{reason: ReasonKeyRevoked, name: "signed after revocation", raw: func() []byte { return mustSign(t, w.revoked, valid) }},
		{reason: ReasonAgencyMismatch, name: "court-b signs as court-a", raw: func() []byte { return mustSign(t, w.b, valid) }},
		{reason: ReasonNotYetValid, name: "issued in 10 minutes", raw: func() []byte {
			p := valid
			p.IssuedAt, p.ExpiresAt = now.Add(10*time.Minute), now.Add(20*time.Minute)
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonExpired, name: "expired 10 minutes ago", raw: func() []byte {
			p := valid
			p.IssuedAt, p.ExpiresAt = now.Add(-20*time.Minute), now.Add(-10*time.Minute)
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonLifetime, name: "48 h lifetime", raw: func() []byte {
			p := valid
			p.ExpiresAt = p.IssuedAt.Add(48 * time.Hour)
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonSchemaViolation, name: "unknown query", pointer: "/body/query", raw: func() []byte {
			p := valid
			p.Body = json.RawMessage(`{"query":"credit_score","subject":{"id_number":"220102199003071235","name":"张伟"}}`)
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonSchemaViolation, name: "bad check digit", pointer: "/body/subject/id_number", raw: func() []byte {
			p := valid
			p.Body = json.RawMessage(`{"query":"identity","subject":{"id_number":"220102199003071236","name":"张伟"}}`)
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonSchemaViolation, name: "unknown type", pointer: "/type", raw: func() []byte {
			p := valid
			p.Type = "letter"
			return mustSign(t, w.ed, p)
		}},
		{reason: ReasonSchemaViolation, name: "issued_at not a time", pointer: "/issued_at", raw: func() []byte {
			b, _ := json.Marshal(valid)
			b = []byte(strings.Replace(string(b), valid.IssuedAt.Format(time.RFC3339), "yesterday", 1))
			k, _ := SignBytes(w.ed, b)
			return k
		}},
	}
	seen := map[Reason]bool{}
	for _, c := range cases {
		t.Run(string(c.reason)+"/"+c.name, func(t *testing.T) {
			v := w.verifier()
			spy := &countingResolver{KeyResolver: w.reg}
			v.Keys = spy
			got, err := v.Verify(context.Background(), c.raw())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want *Error %s, got %v", c.reason, err)
			}
			if e.Reason != c.reason {
				t.Fatalf("reason %s, want %s (%v)", e.Reason, c.reason, err)
			}
			if ReasonOf(err) != c.reason {
				t.Fatalf("ReasonOf = %q", ReasonOf(err))
			}
			if c.pointer != "" && e.Pointer != c.pointer {
				t.Fatalf("pointer %q, want %q (%v)", e.Pointer, c.pointer, err)
			}
			if c.noKey && spy.n.Load() != 0 {
				t.Fatalf("key looked up before %s was decided", c.reason)
			}
			if c.reason.Authenticated() != (got != nil) || (got != e.Verified) {
				t.Fatalf("authenticated=%v but returned %v / Error.Verified %v", c.reason.Authenticated(), got, e.Verified)
			}
			if got != nil && (got.Agency != "court-a" || got.KeyID != "court-a/k1") {
				t.Fatalf("authenticated refusal carries %+v", got)
			}
			seen[c.reason] = true
		})
	}
	for _, r := range Reasons {
		// Verify keeps no state; replay is found by the broker's decision store.
		if !seen[r] && r != ReasonReplay {
			t.Errorf("no case for reason %s", r)
		}
	}
}

func TestAuthenticatedSplit(t *testing.T) {
	want := map[Reason]bool{
		ReasonTooLarge: false, ReasonMalformed: false, ReasonAlgNotAllowed: false, ReasonUnknownKey: false,
		ReasonSignatureInvalid: false, ReasonKeyRevoked: false, ReasonAgencyMismatch: false,
		ReasonNotYetValid: true, ReasonExpired: true, ReasonLifetime: true, ReasonReplay: true, ReasonSchemaViolation: true,
	}
	if len(want) != len(Reasons) {
		t.Fatalf("Reasons has %d codes, table %d", len(Reasons), len(want))
	}
	for r, a := range want {
		if r.Authenticated() != a {
			t.Errorf("%s.Authenticated() = %v", r, !a)
		}
	}
	if ReasonOf(nil) != "" || ReasonOf(errors.New("x")) != "" {
		t.Error("ReasonOf of a non-*Error must be empty")
	}
}

func TestRoundTrip(t *testing.T) {
	w := newWorld(t)
	for _, k := range []*keys.Private{w.ed, w.es} {
		t.Run(string(k.Alg), func(t *testing.T) {
			p := request()
			raw := mustSign(t, k, p)
			got, err := w.verifier().Verify(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != p.ID || got.Agency != p.Agency || !got.IssuedAt.Equal(p.IssuedAt) || got.Purpose != p.Purpose ||
				string(got.Body) != string(p.Body) || got.KeyID != k.KID() || got.Digest != DigestOf(raw) || string(got.Raw) != string(raw) {
				t.Fatalf("round trip: %+v", got)
			}
			hdr, _ := base64.RawURLEncoding.DecodeString(strings.SplitN(string(raw), ".", 2)[0])
			var h map[string]any
			_ = json.Unmarshal(hdr, &h)
			if h["alg"] != string(k.Alg) || h["kid"] != k.KID() {
				t.Fatalf("header %v", h)
			}
		})
	}
}

func TestClockSkewTolerated(t *testing.T) {
	w := newWorld(t)
	p := request()
	p.IssuedAt = now.Add(DefaultClockSkew - time.Second)
	p.ExpiresAt = p.IssuedAt.Add(time.Minute)
	if _, err := w.verifier().Verify(context.Background(), mustSign(t, w.ed, p)); err != nil {
		t.Fatalf("issued within skew: %v", err)
	}
	p = request()
	p.IssuedAt, p.ExpiresAt = now.Add(-time.Hour), now.Add(-DefaultClockSkew+time.Second)
	if _, err := w.verifier().Verify(context.Background(), mustSign(t, w.ed, p)); err != nil {
		t.Fatalf("expired within skew: %v", err)
	}
}

func TestMaxBytesConfigurable(t *testing.T) {
	w := newWorld(t)
	raw := mustSign(t, w.ed, request())
	v := w.verifier()
	v.MaxBytes = len(raw)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	v.MaxBytes = len(raw) - 1
	if _, err := v.Verify(context.Background(), raw); ReasonOf(err) != ReasonTooLarge {
		t.Fatalf("got %v", err)
	}
}

// TestRotationAndRevocation: a new key verifies alongside the old one;
// after the old key is revoked, what it signed before stays verifiable
// offline and what it signs after does not.
func TestRotationAndRevocation(t *testing.T) {
	w := newWorld(t)
	req := mustSign(t, w.ed, request())
	old := w.broker
	oldReceipt := mustSign(t, old, receipt(t, req))

	next, err := keys.Generate("certless", "r2", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	revokedOld := old.Public
	revokedOld.RevokedAt = now.Add(time.Hour)
	reg, err := keys.NewRegistry(revokedOld, next.Public)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyOffline(oldReceipt, reg, nil); err != nil {
		t.Fatalf("receipt issued before revocation: %v", err)
	}
	newReceipt := mustSign(t, next, receipt(t, req))
	if _, err := VerifyOffline(newReceipt, reg, nil); err != nil {
		t.Fatalf("receipt with the new key: %v", err)
	}
	late := receipt(t, req)
	late.IssuedAt = now.Add(2 * time.Hour)
	late.ExpiresAt = late.IssuedAt.Add(time.Hour)
	if _, err := VerifyOffline(mustSign(t, old, late), reg, nil); ReasonOf(err) != ReasonKeyRevoked {
		t.Fatalf("receipt issued after revocation: %v", err)
	}
	// VerifyOffline ignores expiry: a receipt stays checkable for ever.
	expired := receipt(t, req)
	expired.IssuedAt, expired.ExpiresAt = now.Add(-400*24*time.Hour), now.Add(-300*24*time.Hour)
	if _, err := VerifyOffline(mustSign(t, next, expired), reg, nil); err != nil {
		t.Fatalf("old receipt: %v", err)
	}
}

// TestRevokedKeyAtReceipt: the broker takes nothing from a key it receives
// at or after the key's revocation, even when issued_at is earlier (a stolen
// key backdates); offline, what was issued before revocation still verifies.
func TestRevokedKeyAtReceipt(t *testing.T) {
	w := newWorld(t)
	p := request() // issued at now-1m, expires at now+14m
	revokedAt := func(at time.Time) *keys.Registry {
		k := w.ed.Public
		k.RevokedAt = at
		reg, err := keys.NewRegistry(k)
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	raw := mustSign(t, w.ed, p)
	for _, c := range []struct {
		name      string
		revokedAt time.Time
		online    Reason // Verify, receiving at now
		detail    string
	}{
		{name: "revoked after issued_at, before receipt", revokedAt: now.Add(-30 * time.Second),
			online: ReasonKeyRevoked, detail: "key court-a/k1 revoked at 2026-11-18T09:29:30Z, received at 2026-11-18T09:30:00Z"},
		{name: "revoked at the very receive time", revokedAt: now,
			online: ReasonKeyRevoked, detail: "received at 2026-11-18T09:30:00Z"},
		{name: "revoked after receipt", revokedAt: now.Add(time.Nanosecond)},
		{name: "revoked in an hour", revokedAt: now.Add(time.Hour)},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := revokedAt(c.revokedAt)
			v := w.verifier()
			v.Keys = reg
			got, err := v.Verify(context.Background(), raw)
			if ReasonOf(err) != c.online {
				t.Fatalf("Verify: reason %q, want %q (%v)", ReasonOf(err), c.online, err)
			}
			if c.online == "" && (got == nil || got.ID != p.ID) {
				t.Fatalf("Verify accepted %+v", got)
			}
			if c.online != "" && (got != nil || !strings.Contains(err.(*Error).Detail, c.detail)) {
				t.Fatalf("Verify: %v, message %v; want detail %q", err, got, c.detail)
			}
			if got, err := VerifyOffline(raw, reg, nil); err != nil || got.ID != p.ID {
				t.Fatalf("VerifyOffline of a message issued before revocation: %v", err)
			}
		})
	}
	// issued_at at or after revocation is refused by both, received before
	// the revocation or not.
	reg := revokedAt(p.IssuedAt)
	v := w.verifier()
	v.Keys = reg
	if _, err := v.Verify(context.Background(), raw); ReasonOf(err) != ReasonKeyRevoked {
		t.Fatalf("Verify, issued at revocation: %v", err)
	}
	if _, err := VerifyOffline(raw, reg, nil); ReasonOf(err) != ReasonKeyRevoked {
		t.Fatalf("VerifyOffline, issued at revocation: %v", err)
	}
}

func TestVerifyOfflineChecksSender(t *testing.T) {
	w := newWorld(t)
	req := mustSign(t, w.ed, request())
	forged := receipt(t, req) // says agency certless
	if _, err := VerifyOffline(mustSign(t, w.ed, forged), w.reg, nil); ReasonOf(err) != ReasonAgencyMismatch {
		t.Fatalf("court-a signing a broker receipt: %v", err)
	}
}

func TestSignRefusesEncryptionKey(t *testing.T) {
	w := newWorld(t)
	if _, err := Sign(w.enc, request()); err == nil {
		t.Fatal("signing with an encryption key must fail")
	}
	if _, err := Sign(nil, request()); err == nil {
		t.Fatal("nil key must fail")
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Reason: ReasonSchemaViolation, Pointer: "/body/query", Detail: "bad", Err: errors.New("inner")}
	if got := e.Error(); got != "envelope: schema_violation at /body/query: bad: inner" {
		t.Fatal(got)
	}
	if !errors.Is(e, e.Err) {
		t.Fatal("Unwrap")
	}
}
