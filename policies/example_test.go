package policies_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
)

const agreement = `id: court-changchun/criminal-records
version: 1
title: 长春市中级人民法院 — 违法犯罪记录核查
parties:
  requester: court-changchun
  provider: police-jilin
queries:
  - query: criminal_record
    purposes: [litigation]
    case_ref_required: true
    fields: [as_of, has_criminal_record]
service_hours: {from: "08:00", to: "18:00"}
validity:
  from: 2026-11-01T00:00:00+08:00
  until: 2027-11-01T00:00:00+08:00
status: active
`

// parties returns a key of each party and a registry of their public keys.
func parties() (court, police *keys.Private, reg *keys.Registry) {
	court, _ = keys.Generate("court-changchun", "k1", keys.EdDSA)
	police, _ = keys.Generate("police-jilin", "k1", keys.ES256)
	reg, _ = keys.NewRegistry(court.Public, police.Public)
	return court, police, reg
}

// Both parties sign the file's exact bytes; Verify then accepts it, and
// refuses it when one byte changed or a party has not signed.
func ExampleSign() {
	court, police, reg := parties()
	doc := []byte(agreement)
	now := time.Date(2026, 10, 20, 9, 0, 0, 0, time.UTC)

	sigs, _ := policies.Sign(doc, nil, court, now)
	fmt.Println("court only:", reason(policies.Verify(doc, sigs, reg, nil)))

	sigs, _ = policies.Sign(doc, sigs, police, now)
	fmt.Println("both:", reason(policies.Verify(doc, sigs, reg, nil)))

	tampered := bytes.Replace(doc, []byte("litigation"), []byte("litigatiom"), 1)
	fmt.Println("one byte changed:", reason(policies.Verify(tampered, sigs, reg, nil)))
	// Output:
	// court only: missing_party
	// both: ok
	// one byte changed: signature_invalid
}

func reason(err error) string {
	var e *policies.Error
	if errors.As(err, &e) {
		return string(e.Reason)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// A folder with one co-signed agreement decides requests; every decision
// cites the agreement.
func ExampleSet_Authorise() {
	court, police, reg := parties()
	dir, _ := os.MkdirTemp("", "policies")
	defer os.RemoveAll(dir)
	doc := []byte(agreement)
	at := time.Date(2026, 10, 20, 9, 0, 0, 0, time.UTC)
	sigs, _ := policies.Sign(doc, nil, court, at)
	sigs, _ = policies.Sign(doc, sigs, police, at)
	_ = os.WriteFile(filepath.Join(dir, "court.yaml"), doc, 0o644)
	_ = os.WriteFile(filepath.Join(dir, "court.yaml"+policies.SignaturesSuffix), sigs, 0o644)

	set, problems := policies.Load(dir, reg)
	fmt.Println("agreements:", set.Len(), "problems:", len(problems))

	req := policies.Request{Agency: "court-changchun", Query: "criminal_record", Purpose: "litigation", CaseRef: "(2026)吉01刑初123号", SubjectRegion: "220102"}
	show := func(r policies.Request, now time.Time) {
		d, _ := set.Authorise(context.Background(), r, now, nil)
		if d.Allowed {
			fmt.Println("allowed", d.Agreement.ID, d.Agreement.Version, d.Fields)
			return
		}
		fmt.Println("denied", d.Reason)
	}
	tuesday10 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing
	show(req, tuesday10)
	show(req, tuesday10.Add(8*time.Hour)) // 18:00 in Beijing
	noCase := req
	noCase.CaseRef = "n/a"
	show(noCase, tuesday10)
	other := req
	other.Agency = "notary-dunhua"
	show(other, tuesday10)
	// Output:
	// agreements: 1 problems: 0
	// allowed court-changchun/criminal-records 1 [as_of has_criminal_record]
	// denied outside_service_hours
	// denied case_reference_missing
	// denied no_agreement
}
