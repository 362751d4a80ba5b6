package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// world is one broker, one agency that sent one request, and the keys to
// answer it.
type world struct {
	now    time.Time
	broker *keys.Private // certless/b1
	court  *keys.Private // court-changchun/k1, an agency
	enc    *keys.Private // court-changchun/e1, the court's receipt encryption key
	req    Signed        // the court's request
	b      *Broker       // from the broker's JWKS
	mixed  *Broker       // broker and court keys in one resolver
}

const brokerID = "certless"

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{now: time.Date(2026, 11, 18, 9, 30, 0, 0, time.UTC)}
	w.broker = mustGenerate(t, brokerID, "b1", keys.EdDSA)
	w.court = mustGenerate(t, "court-changchun", "k1", keys.EdDSA)
	w.enc = mustGenerate(t, "court-changchun", "e1", keys.ECDHES)
	var err error
	if w.req, err = Build(w.court, Request{Query: "identity", Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis: "criminal-proceedings", CaseRef: "CASE-1"}, w.now); err != nil {
		t.Fatal(err)
	}
	w.b = mustBroker(t, w.broker.Public)
	reg, err := keys.NewRegistry(w.broker.Public, w.court.Public)
	if err != nil {
		t.Fatal(err)
	}
	w.mixed = &Broker{ID: brokerID, keys: reg}
	return w
}

func mustGenerate(t testing.TB, agency, keyID string, alg keys.Alg) *keys.Private {
	t.Helper()
	k, err := keys.Generate(agency, keyID, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustBroker(t testing.TB, pubs ...keys.Public) *Broker {
	t.Helper()
	jwks, err := keys.MarshalJWKS(pubs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := BrokerKeys(brokerID, jwks)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// receipt signs with key the broker's answer to w.req, as broker/pipeline.go
// seal() builds it, after edit has changed payload or body.
func (w *world) receipt(t testing.TB, key *keys.Private, edit func(*envelope.Payload, *schemas.Receipt)) []byte {
	t.Helper()
	body := schemas.Receipt{
		RequestID: w.req.ID, RequestDigest: w.req.Digest, RequestAgency: "court-changchun",
		Query: "identity", Decision: schemas.DecisionAnswered, Answer: json.RawMessage(`{"id_name_match":true}`),
		Agreement: &schemas.AgreementRef{ID: "allow/court-changchun", Digest: "sha256:" + strings.Repeat("ab", 32)},
	}
	p := envelope.Payload{
		Type: schemas.TypeReceipt, ID: ulid.Make().String(), Agency: key.Agency,
		IssuedAt: w.now, ExpiresAt: w.now.Add(30 * 24 * time.Hour),
		Purpose: envelope.Purpose{Basis: "criminal-proceedings", CaseRef: "CASE-1"},
	}
	if edit != nil {
		edit(&p, &body)
	}
	var err error
	if p.Body, err = json.Marshal(body); err != nil {
		t.Fatal(err)
	}
	raw, err := envelope.Sign(key, p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerifyReceipt(t *testing.T) {
	w := newWorld(t)
	expect := Expect{Now: w.now, RequestAgency: "court-changchun", RequestDigest: w.req.Digest}
	revokedBefore := w.broker.Public
	revokedBefore.RevokedAt = w.now.Add(-time.Minute)
	revokedAfter := w.broker.Public
	revokedAfter.RevokedAt = w.now.Add(time.Minute)
	encrypt := func(jws []byte) []byte {
		jwe, err := envelope.EncryptTo(jws, w.enc.Public)
		if err != nil {
			t.Fatal(err)
		}
		return jwe
	}
	notReceipt, err := Build(w.broker, Request{Query: "identity", Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis: "criminal-proceedings", CaseRef: "CASE-1"}, w.now)
	if err != nil {
		t.Fatal(err)
	}
	tampered := w.receipt(t, w.broker, nil)
	sig := bytes.LastIndexByte(tampered, '.') + 10
	tampered[sig] = map[bool]byte{true: 'B', false: 'A'}[tampered[sig] == 'A']

	cases := []struct {
		name   string
		raw    []byte
		b      *Broker
		expect Expect
		err    error           // the sentinel refusal, or nil
		reason envelope.Reason // the envelope refusal, or ""
	}{
		{name: "good", raw: w.receipt(t, w.broker, nil), b: w.b, expect: expect},
		{name: "good without expectations", raw: w.receipt(t, w.broker, nil), b: w.b, expect: Expect{Now: w.now}},
		{name: "good, key revoked after issued_at", raw: w.receipt(t, w.broker, nil), b: mustBroker(t, revokedAfter), expect: expect},
		{name: "encrypted", raw: encrypt(w.receipt(t, w.broker, nil)), b: w.b,
			expect: Expect{Now: w.now, RequestDigest: w.req.Digest, Decrypt: w.enc}},
		{name: "encrypted without a decryption key", raw: encrypt(w.receipt(t, w.broker, nil)), b: w.b, expect: expect, err: ErrUndecryptable},
		{name: "encrypted for another key", raw: encrypt(w.receipt(t, w.broker, nil)), b: w.b,
			expect: Expect{Now: w.now, Decrypt: mustGenerate(t, "court-changchun", "e2", keys.ECDHES)}, err: ErrUndecryptable},

		// Only the broker's.
		{name: "agency-signed receipt", raw: w.receipt(t, w.court, nil), b: w.mixed, expect: expect, err: ErrNotBroker},
		{name: "agency-signed receipt, broker's own JWKS", raw: w.receipt(t, w.court, nil), b: w.b, expect: expect, reason: envelope.ReasonUnknownKey},
		{name: "kid of another agency claiming the broker id",
			raw: w.receipt(t, w.court, func(p *envelope.Payload, _ *schemas.Receipt) { p.Agency = brokerID }), b: w.mixed, expect: expect,
			err: ErrNotBroker, reason: envelope.ReasonAgencyMismatch},
		{name: "broker id mismatch", raw: w.receipt(t, w.broker, nil), b: &Broker{ID: "certless-staging", keys: w.b.keys}, expect: expect, err: ErrNotBroker},
		{name: "payload agency is not the broker's",
			raw: w.receipt(t, w.broker, func(p *envelope.Payload, _ *schemas.Receipt) { p.Agency = "court-changchun" }), b: w.b, expect: expect,
			err: ErrNotBroker, reason: envelope.ReasonAgencyMismatch},
		{name: "key revoked before issued_at", raw: w.receipt(t, w.broker, nil), b: mustBroker(t, revokedBefore), expect: expect, reason: envelope.ReasonKeyRevoked},
		{name: "bad signature", raw: tampered, b: w.b, expect: expect, reason: envelope.ReasonSignatureInvalid},
		{name: "no broker", raw: w.receipt(t, w.broker, nil), expect: expect, err: ErrNotBroker},

		// A receipt, in force.
		{name: "not a receipt", raw: notReceipt.Bytes, b: w.b, expect: expect, err: ErrNotReceipt},
		{name: "schema violation",
			raw: w.receipt(t, w.broker, func(_ *envelope.Payload, r *schemas.Receipt) { r.Decision = "maybe" }), b: w.b, expect: expect,
			reason: envelope.ReasonSchemaViolation},
		{name: "expired", raw: w.receipt(t, w.broker, func(p *envelope.Payload, _ *schemas.Receipt) { p.ExpiresAt = w.now }), b: w.b, expect: expect,
			err: ErrReceiptExpired},
		{name: "expired by the default clock", raw: w.receipt(t, w.broker, func(p *envelope.Payload, _ *schemas.Receipt) {
			p.IssuedAt, p.ExpiresAt = w.now.Add(-time.Hour), w.now.Add(-time.Minute)
		}), b: w.b, expect: Expect{}, err: ErrReceiptExpired},
		{name: "not yet valid", raw: w.receipt(t, w.broker, func(p *envelope.Payload, _ *schemas.Receipt) {
			p.IssuedAt = w.now.Add(envelope.DefaultClockSkew + time.Second)
		}), b: w.b, expect: expect, err: ErrReceiptNotYetValid},
		{name: "issued within the clock skew", raw: w.receipt(t, w.broker, func(p *envelope.Payload, _ *schemas.Receipt) {
			p.IssuedAt = w.now.Add(envelope.DefaultClockSkew)
		}), b: w.b, expect: expect},

		// For the very request.
		{name: "request agency mismatch", raw: w.receipt(t, w.broker, nil), b: w.b,
			expect: Expect{Now: w.now, RequestAgency: "notary-dunhua", RequestDigest: w.req.Digest}, err: ErrRequestMismatch},
		{name: "request digest mismatch", raw: w.receipt(t, w.broker, nil), b: w.b,
			expect: Expect{Now: w.now, RequestAgency: "court-changchun", RequestDigest: envelope.DigestOf([]byte("another request"))}, err: ErrRequestMismatch},
	}
	sentinels := []error{ErrNotBroker, ErrNotReceipt, ErrReceiptExpired, ErrReceiptNotYetValid, ErrRequestMismatch, ErrUndecryptable}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := VerifyReceipt(c.raw, c.b, c.expect)
			if c.err == nil && c.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if r.RequestDigest != w.req.Digest || r.Envelope.Agency != brokerID || string(r.Raw) != string(c.raw) {
					t.Fatalf("receipt %+v", r)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %v %s", c.err, c.reason)
			}
			if r != nil {
				t.Errorf("refusal returned a receipt too")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == c.err) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, !(s == c.err))
				}
			}
			if got := envelope.ReasonOf(err); got != c.reason {
				t.Errorf("reason %q, want %q (%v)", got, c.reason, err)
			}
		})
	}
}

func TestBrokerKeys(t *testing.T) {
	w := newWorld(t)
	second := mustGenerate(t, brokerID, "b2", keys.ES256)
	b := mustBroker(t, w.broker.Public, second.Public)
	if b.ID != brokerID {
		t.Fatalf("id %q", b.ID)
	}
	for _, kid := range []string{w.broker.KID(), second.KID()} {
		if _, ok := b.Lookup(kid); !ok {
			t.Errorf("Lookup(%s) found nothing", kid)
		}
	}
	if _, ok := w.mixed.Lookup(w.court.KID()); ok {
		t.Errorf("Lookup found an agency key in a mixed resolver")
	}

	refuse := []struct {
		name string
		id   string
		pubs []keys.Public
		err  error
	}{
		{name: "one agency key mixed in", id: brokerID, pubs: []keys.Public{w.broker.Public, w.court.Public}, err: ErrNotBroker},
		{name: "only agency keys", id: brokerID, pubs: []keys.Public{w.court.Public}, err: ErrNotBroker},
		{name: "an encryption key", id: brokerID, pubs: []keys.Public{w.broker.Public, mustGenerate(t, brokerID, "e1", keys.ECDHES).Public}},
		{name: "no key", id: brokerID},
		{name: "bad broker id", id: "Certless/x", pubs: []keys.Public{w.broker.Public}, err: keys.ErrBadName},
	}
	for _, c := range refuse {
		t.Run(c.name, func(t *testing.T) {
			jwks, err := keys.MarshalJWKS(c.pubs)
			if err != nil {
				t.Fatal(err)
			}
			b, err := BrokerKeys(c.id, jwks)
			if err == nil {
				t.Fatalf("accepted %d keys", len(c.pubs))
			}
			if b != nil {
				t.Errorf("refusal returned a Broker too")
			}
			if c.err != nil && !errors.Is(err, c.err) {
				t.Errorf("error %v, want %v", err, c.err)
			}
		})
	}
}

func TestFetchBrokerKeys(t *testing.T) {
	w := newWorld(t)
	good, err := keys.MarshalJWKS([]keys.Public{w.broker.Public})
	if err != nil {
		t.Fatal(err)
	}
	mixed, err := keys.MarshalJWKS([]keys.Public{w.broker.Public, w.court.Public})
	if err != nil {
		t.Fatal(err)
	}
	huge := append([]byte(`{"keys":[]`+strings.Repeat(" ", maxJWKSBytes)), '}')
	serve := func(body []byte) string {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/jwks.json" {
				http.NotFound(rw, r)
				return
			}
			_, _ = rw.Write(body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ctx := context.Background()
	b, err := FetchBrokerKeys(ctx, serve(good), brokerID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReceipt(w.receipt(t, w.broker, nil), b, Expect{Now: w.now}); err != nil {
		t.Errorf("fetched keys do not verify the broker's receipt: %v", err)
	}
	if _, err := FetchBrokerKeys(ctx, serve(mixed), brokerID); !errors.Is(err, ErrNotBroker) {
		t.Errorf("mixed JWKS: %v, want ErrNotBroker", err)
	}
	if _, err := FetchBrokerKeys(ctx, serve(huge), brokerID); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("JWKS above 1 MiB: %v", err)
	}
	if _, err := FetchBrokerKeys(ctx, serve(good)+"/nowhere", brokerID); err == nil {
		t.Errorf("404 accepted")
	}
}
