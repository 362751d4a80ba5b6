// Package credential writes a Certless receipt as a W3C Verifiable
// Credential (Data Model 2.0) secured with JOSE as a vc+jwt (VC-JOSE-COSE):
// the issuer is the broker, credentialSubject the receipt's decision and
// minimised answer, and credentialStatus the receipt's revocation entry in
// the broker's Bitstring Status List, so credential tooling can consume a
// Certless answer and check its revocation. The credential never names the
// person by ID number: the subject is the request.
//
// The package has no broker imports: agencies and auditors use it.
package credential

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/statuslist"
)

// Type is the credential type of a Certless receipt.
const Type = "CertlessReceipt"

// Credential is a receipt as a Verifiable Credential.
type Credential struct {
	Context           []string             `json:"@context"`
	ID                string               `json:"id"`
	Type              []string             `json:"type"`
	Issuer            string               `json:"issuer"`
	ValidFrom         string               `json:"validFrom"`
	ValidUntil        string               `json:"validUntil"`
	CredentialSubject Subject              `json:"credentialSubject"`
	CredentialStatus  *schemas.StatusEntry `json:"credentialStatus,omitempty"`
	Evidence          []Evidence           `json:"evidence,omitempty"`
	TermsOfUse        []map[string]string  `json:"termsOfUse,omitempty"`
}

// Subject is what the credential says: the decision on one request.
type Subject struct {
	// ID names the request the receipt answers (urn:certless:request:<digest>).
	ID        string                `json:"id"`
	Type      string                `json:"type"`
	Requester string                `json:"requester"`
	RequestID string                `json:"requestId,omitempty"`
	Query     string                `json:"query,omitempty"`
	Decision  string                `json:"decision"`
	Reason    string                `json:"reason,omitempty"`
	Answer    json.RawMessage       `json:"answer,omitempty"`
	AsOf      string                `json:"asOf,omitempty"`
	Agreement *schemas.AgreementRef `json:"agreement,omitempty"`
	Receipt   string                `json:"receipt"`
}

// Evidence points at the receipt's place in the transparency log.
type Evidence struct {
	Type      []string `json:"type"`
	LogOrigin string   `json:"logOrigin,omitempty"`
	LogIndex  int64    `json:"logIndex"`
}

// FromReceipt is the credential of a verified receipt (its payload p and
// body), issued by the broker brokerID; logIndex is its leaf (-1: none).
func FromReceipt(p envelope.Payload, body schemas.Receipt, brokerID, logOrigin string, logIndex int64) (Credential, error) {
	if p.Type != schemas.TypeReceipt || p.Agency != brokerID {
		return Credential{}, errors.New("credential: not a receipt of this broker")
	}
	c := Credential{
		Context:    []string{statuslist.ContextV2},
		ID:         "urn:certless:receipt:" + p.ID,
		Type:       []string{"VerifiableCredential", Type},
		Issuer:     statuslist.Issuer(brokerID),
		ValidFrom:  p.IssuedAt.UTC().Format(time.RFC3339),
		ValidUntil: p.ExpiresAt.UTC().Format(time.RFC3339),
		CredentialSubject: Subject{
			ID: "urn:certless:request:" + body.RequestDigest, Type: "CertlessDecision",
			Requester: body.RequestAgency, RequestID: body.RequestID, Query: body.Query,
			Decision: body.Decision, Reason: body.Reason, Answer: body.Answer, Agreement: body.Agreement,
			Receipt: "urn:certless:receipt:" + p.ID,
		},
		CredentialStatus: body.CredentialStatus,
	}
	if body.AsOf != nil {
		c.CredentialSubject.AsOf = body.AsOf.UTC().Format(time.RFC3339)
	}
	if logIndex >= 0 {
		c.Evidence = []Evidence{{Type: []string{"CertlessTransparencyLogEntry"}, LogOrigin: logOrigin, LogIndex: logIndex}}
	}
	if p.Purpose.Basis != "" {
		c.TermsOfUse = []map[string]string{{"type": "CertlessPurpose", "basis": p.Purpose.Basis, "caseRef": p.Purpose.CaseRef}}
	}
	return c, nil
}

// MediaType is the typ of a credential secured as a JWT.
const MediaType = statuslist.MediaType

// Sign secures c as a vc+jwt with the broker's key.
func Sign(key *keys.Private, c Credential) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	return envelope.SignTyped(key, MediaType, b)
}
