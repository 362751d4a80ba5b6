package envelope_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// received is the broker's fixed clock in the examples.
var received = time.Date(2026, 11, 18, 9, 30, 0, 0, time.UTC)

// identityRequest is a verification_request from court-a that its schema
// accepts.
func identityRequest() envelope.Payload {
	return envelope.Payload{
		Type:      schemas.TypeVerificationRequest,
		ID:        "01JD3Z8Q4X2M7N5P6R8S9T0VWX",
		Agency:    "court-a",
		IssuedAt:  received.Add(-time.Minute),
		ExpiresAt: received.Add(14 * time.Minute),
		Purpose:   envelope.Purpose{Basis: "notarisation", CaseRef: "(2026)长证字第1234号"},
		Body:      json.RawMessage(`{"query":"identity","subject":{"id_number":"220102199003071235","name":"张伟"}}`),
	}
}

func ExampleSign() {
	key, err := keys.Generate("court-a", "k1", keys.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := envelope.Sign(key, identityRequest())
	if err != nil {
		log.Fatal(err)
	}
	parts := bytes.Split(raw, []byte("."))
	header, _ := base64.RawURLEncoding.DecodeString(string(parts[0]))
	fmt.Println(len(parts), "parts")
	fmt.Println(string(header))
	// Output:
	// 3 parts
	// {"alg":"EdDSA","kid":"court-a/k1"}
}

func ExampleVerifier_Verify() {
	key, err := keys.Generate("court-a", "k1", keys.ES256)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := keys.NewRegistry(key.Public)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := envelope.Sign(key, identityRequest())
	if err != nil {
		log.Fatal(err)
	}

	v := &envelope.Verifier{Keys: reg, Now: func() time.Time { return received }}
	msg, err := v.Verify(context.Background(), raw)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Type, msg.Agency, msg.KeyID, msg.Purpose.Basis)

	// The same signature over another case reference.
	parts := bytes.Split(raw, []byte("."))
	other := identityRequest()
	other.Purpose.CaseRef = "(2026)长证字第9999号"
	payload, _ := json.Marshal(other)
	parts[1] = []byte(base64.RawURLEncoding.EncodeToString(payload))
	_, err = v.Verify(context.Background(), bytes.Join(parts, []byte(".")))
	fmt.Println(envelope.ReasonOf(err))
	// Output:
	// verification_request court-a court-a/k1 notarisation
	// signature_invalid
}

// An agency checks a message with the sender's published keys alone, also
// after the key was rotated out and revoked. The broker, receiving the same
// bytes after the revocation, refuses them.
func ExampleVerifyOffline() {
	key, err := keys.Generate("court-a", "k1", keys.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := envelope.Sign(key, identityRequest()) // issued at 09:29
	if err != nil {
		log.Fatal(err)
	}
	revoked := key.Public
	revoked.RevokedAt = received.Add(-10 * time.Second) // 09:29:50
	jwks, err := keys.MarshalJWKS([]keys.Public{revoked})
	if err != nil {
		log.Fatal(err)
	}

	published, err := keys.ParseJWKS(jwks)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := keys.NewRegistry(published...)
	if err != nil {
		log.Fatal(err)
	}
	msg, err := envelope.VerifyOffline(raw, reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("offline:", msg.Type, "from", msg.Agency)

	broker := &envelope.Verifier{Keys: reg, Now: func() time.Time { return received }}
	_, err = broker.Verify(context.Background(), raw)
	fmt.Println("broker at 09:30:", envelope.ReasonOf(err))
	// Output:
	// offline: verification_request from court-a
	// broker at 09:30: key_revoked
}
