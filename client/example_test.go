package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// An agency signs a request; the broker (here an envelope.Verifier holding
// the agency's public key) verifies it before reading it.
func ExampleBuild() {
	court, err := keys.Generate("court-changchun", "k1", keys.EdDSA)
	check(err)
	s, err := client.Build(court, client.Request{
		Query:   "criminal_record",
		Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis:   "criminal-proceedings", CaseRef: "CASE-2026-0117",
	}, time.Now())
	check(err)

	agencies, err := keys.NewRegistry(court.Public)
	check(err)
	v, err := (&envelope.Verifier{Keys: agencies}).Verify(context.Background(), s.Bytes)
	check(err)
	var body schemas.VerificationRequest
	check(json.Unmarshal(v.Body, &body))
	fmt.Println(v.Type, body.Query, "from", v.Agency)
	fmt.Println("digest matches:", v.Digest == s.Digest)
	// Output:
	// verification_request criminal_record from court-changchun
	// digest matches: true
}

// An agency checks the broker's receipt for its request against the
// broker's published JWKS, then finds the same receipt refused once it has
// expired.
func ExampleVerifyReceipt() {
	now := time.Date(2026, 11, 18, 9, 30, 0, 0, time.UTC)
	court, err := keys.Generate("court-changchun", "k1", keys.EdDSA)
	check(err)
	req, err := client.Build(court, client.Request{
		Query:   "identity",
		Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis:   "criminal-proceedings", CaseRef: "CASE-2026-0117",
	}, now)
	check(err)

	// The broker answers, signing as itself; it publishes its JWKS.
	brokerKey, err := keys.Generate("certless", "b1", keys.EdDSA)
	check(err)
	body, err := json.Marshal(schemas.Receipt{
		RequestID: req.ID, RequestDigest: req.Digest, RequestAgency: "court-changchun",
		Query: "identity", Decision: schemas.DecisionAnswered, Answer: json.RawMessage(`{"id_name_match":true}`),
		Agreement: &schemas.AgreementRef{ID: "allow/court-changchun", Digest: envelope.DigestOf([]byte("allow-list"))},
	})
	check(err)
	raw, err := envelope.Sign(brokerKey, envelope.Payload{
		Type: schemas.TypeReceipt, ID: ulid.Make().String(), Agency: "certless",
		IssuedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour),
		Purpose: envelope.Purpose{Basis: "criminal-proceedings", CaseRef: "CASE-2026-0117"}, Body: body,
	})
	check(err)
	jwks, err := keys.MarshalJWKS([]keys.Public{brokerKey.Public})
	check(err)

	// The agency.
	b, err := client.BrokerKeys("certless", jwks)
	check(err)
	r, err := client.VerifyReceipt(raw, b, client.Expect{Now: now.Add(time.Minute), RequestAgency: "court-changchun", RequestDigest: req.Digest})
	check(err)
	fmt.Println("decision:", r.Decision)
	fmt.Println("answers our request:", r.RequestDigest == req.Digest, r.RequestID == req.ID)

	_, err = client.VerifyReceipt(raw, b, client.Expect{Now: now.Add(31 * 24 * time.Hour), RequestDigest: req.Digest})
	fmt.Println("a month later, expired:", errors.Is(err, client.ErrReceiptExpired))
	// Output:
	// decision: answered
	// answers our request: true true
	// a month later, expired: true
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
