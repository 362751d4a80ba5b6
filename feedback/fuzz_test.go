package feedback_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
)

// FuzzBodies: a feedback message's body reaches the handlers only after
// its schema accepted it; every body the schema accepts must then decode
// into the type the handler reads (acknowledgement, dispute), or an
// agency's valid message would be refused as undecodable. Never a panic.
func FuzzBodies(f *testing.F) {
	set, err := schemas.Default()
	if err != nil {
		f.Fatal(err)
	}
	ref := `{"id":"01M8SBS3H76VPEJWY8MMSAHJD4","digest":"sha256:` + "fe8240f1d964e7baa4e1f3be5cc766288867b4e66082a2f0b72d11b11aa62022" + `"}`
	f.Add(schemas.TypeAcknowledgement, []byte(`{"ref_type":"receipt","ref":`+ref+`,"kind":"used"}`))
	f.Add(schemas.TypeDispute, []byte(`{"receipt":`+ref+`,"fields":["has_criminal_record"],"statement":"the record was expunged in 2019"}`))
	f.Add(schemas.TypeDispute, []byte(`{"receipt":{},"fields":[],"statement":""}`))
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	accepted := func(typ string, body []byte) (bool, error) {
		doc, err := json.Marshal(envelope.Payload{Type: typ, ID: "01M8SBS2HE8ZWCTFQZ7W20DPJY", Agency: "court-changchun",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "C-1"}, Body: body})
		if err != nil {
			return false, err
		}
		name, _ := schemas.SchemaName(typ)
		return set.Validate(name, doc) == nil, nil
	}
	// The property is only exercised on accepted bodies: the seeds must be.
	for _, typ := range []string{schemas.TypeAcknowledgement, schemas.TypeDispute} {
		body := `{"ref_type":"receipt","ref":` + ref + `,"kind":"used"}`
		if typ == schemas.TypeDispute {
			body = `{"receipt":` + ref + `,"fields":["has_criminal_record"],"statement":"the record was expunged in 2019"}`
		}
		if ok, err := accepted(typ, []byte(body)); !ok || err != nil {
			f.Fatalf("the seed %s is refused by its schema (%v)", typ, err)
		}
	}
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		if typ != schemas.TypeAcknowledgement && typ != schemas.TypeDispute {
			typ = schemas.TypeDispute
		}
		if !json.Valid(body) {
			return
		}
		if ok, err := accepted(typ, body); !ok || err != nil {
			return
		}
		var into any = &schemas.Dispute{}
		if typ == schemas.TypeAcknowledgement {
			into = &schemas.Acknowledgement{}
		}
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("the %s schema accepts %s, which does not decode: %v", typ, body, err)
		}
	})
}
