package envelope

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certless/certless/schemas"
)

func loadExample(t testing.TB, typ string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "examples", typ+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExamplesValidate: every message type has a valid example, and the
// example decodes into Payload.
func TestExamplesValidate(t *testing.T) {
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range schemas.Types {
		t.Run(typ, func(t *testing.T) {
			b, _ := json.Marshal(loadExample(t, typ))
			name, ok := schemas.SchemaName(typ)
			if !ok {
				t.Fatal("no schema name")
			}
			if err := set.Validate(name, b); err != nil {
				t.Fatal(err)
			}
			var p Payload
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != typ {
				t.Fatalf("type %q", p.Type)
			}
		})
	}
}

// TestSchemasShareEnvelope: the common part of every message schema is the
// same, so agencies can rely on one envelope shape.
func TestSchemasShareEnvelope(t *testing.T) {
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]any
	for _, typ := range schemas.Types {
		raw, ok := set.Raw(typ + ".v1")
		if !ok {
			t.Fatalf("%s.v1 not embedded", typ)
		}
		var s map[string]any
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if want := "https://certless.example/schemas/" + typ + "/v1.json"; s["$id"] != want {
			t.Errorf("%s: $id %v, want %s", typ, s["$id"], want)
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties must be false", typ)
		}
		props := s["properties"].(map[string]any)
		delete(props, "type")
		delete(props, "body")
		common, _ := json.Marshal([]any{props, s["required"], s["definitions"]})
		if ref == nil {
			ref = map[string]any{"c": string(common)}
		} else if ref["c"] != string(common) {
			t.Errorf("%s: envelope part differs from %s", typ, schemas.Types[0])
		}
	}
}

// TestSchemaViolations: each edit of a valid example breaks the schema at
// the expected JSON pointer.
func TestSchemaViolations(t *testing.T) {
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 129)
	cases := []struct {
		name, typ, want string
		edit            func(m map[string]any)
	}{
		{"extra top-level member", "verification_request", "/extra", func(m map[string]any) { m["extra"] = 1 }},
		{"missing purpose", "verification_request", "/purpose", func(m map[string]any) { delete(m, "purpose") }},
		{"missing case_ref", "verification_request", "/purpose/case_ref", func(m map[string]any) { delete(m["purpose"].(map[string]any), "case_ref") }},
		{"case_ref too long", "verification_request", "/purpose/case_ref", func(m map[string]any) { m["purpose"].(map[string]any)["case_ref"] = long }},
		{"basis with control char", "verification_request", "/purpose/basis", func(m map[string]any) { m["purpose"].(map[string]any)["basis"] = "a\nb" }},
		{"id not a ULID", "verification_request", "/id", func(m map[string]any) { m["id"] = "01JD3Z8Q4X2M7N5P6R8S9T0VWI" }},
		{"date only issued_at", "verification_request", "/issued_at", func(m map[string]any) { m["issued_at"] = "2026-11-18" }},
		{"agency upper case", "verification_request", "/agency", func(m map[string]any) { m["agency"] = "Court" }},
		{"unknown query", "verification_request", "/body/query", func(m map[string]any) { body(m)["query"] = "credit_score" }},
		{"bad check digit", "verification_request", "/body/subject/id_number", func(m map[string]any) {
			body(m)["subject"].(map[string]any)["id_number"] = "220102199003071236"
		}},
		{"impossible birth date", "verification_request", "/body/subject/id_number", func(m map[string]any) {
			body(m)["subject"].(map[string]any)["id_number"] = "220102199002301238"
		}},
		{"kinship without related", "verification_request", "/body/related_subject", func(m map[string]any) { delete(body(m), "related_subject") }},
		{"related on identity", "verification_request", "/body/related_subject", func(m map[string]any) { body(m)["query"] = "identity" }},
		{"name too long", "verification_request", "/body/subject/name", func(m map[string]any) {
			body(m)["subject"].(map[string]any)["name"] = strings.Repeat("张", 65)
		}},
		{"receipt bad decision", "receipt", "/body/decision", func(m map[string]any) { body(m)["decision"] = "maybe" }},
		{"answered without answer", "receipt", "/body/answer", func(m map[string]any) { delete(body(m), "answer") }},
		{"denied with answer", "receipt", "/body/answer", func(m map[string]any) { body(m)["decision"] = "denied"; body(m)["reason"] = "query_not_allowed" }},
		{"rejected without reason", "receipt", "/body/reason", func(m map[string]any) { body(m)["decision"] = "rejected"; delete(body(m), "answer") }},
		{"answer field not minimisable", "receipt", "/body/answer/salary", func(m map[string]any) { body(m)["answer"].(map[string]any)["salary"] = 1 }},
		{"bad digest", "receipt", "/body/request_digest", func(m map[string]any) { body(m)["request_digest"] = "sha1:00" }},
		{"ack bad ref type", "acknowledgement", "/body/ref_type", func(m map[string]any) { body(m)["ref_type"] = "email" }},
		{"dispute empty fields", "dispute", "/body/fields", func(m map[string]any) { body(m)["fields"] = []any{} }},
		{"corrected without answer", "dispute_resolution", "/body/corrected_answer", func(m map[string]any) { delete(body(m), "corrected_answer") }},
		{"confirmed with answer", "dispute_resolution", "/body/corrected_answer", func(m map[string]any) { body(m)["outcome"] = "confirmed" }},
		{"manifest sequence 0", "batch_manifest", "/body/sequence", func(m map[string]any) { body(m)["sequence"] = 0 }},
		{"record negative index", "batch_record", "/body/index", func(m map[string]any) { body(m)["index"] = -1 }},
		{"agreement one party", "agreement", "/body/parties", func(m map[string]any) { body(m)["parties"] = body(m)["parties"].([]any)[:1] }},
		{"agreement unknown query fields", "agreement", "/body/fields/credit", func(m map[string]any) { body(m)["fields"].(map[string]any)["credit"] = []any{} }},
		{"wrong type const", "agreement", "/type", func(m map[string]any) { m["type"] = "receipt" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := loadExample(t, c.typ)
			c.edit(m)
			b, _ := json.Marshal(m)
			err := set.Validate(c.typ+".v1", b)
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a violation at %s, got %v", c.want, err)
			}
			if ve.Pointer != c.want {
				t.Fatalf("pointer %q, want %q (%v)", ve.Pointer, c.want, err)
			}
		})
	}
}

func body(m map[string]any) map[string]any { return m["body"].(map[string]any) }
