package broker

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/config"
	"github.com/certless/certless/schemas"
)

func TestJurisdictions(t *testing.T) {
	cases := map[string][]string{
		"222403": {"222403", "222400", "220000"},
		"220100": {"220100", "220000"},
		"220000": {"220000"},
		"2204":   nil,
	}
	for in, want := range cases {
		if got := Jurisdictions(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Jurisdictions(%s) = %v, want %v", in, got, want)
		}
	}
}

type fakeSource struct {
	name  string
	found bool
	err   error
	calls *[]string
}

func (f fakeSource) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	*f.calls = append(*f.calls, f.name)
	return adapters.Answer{Found: f.found, Source: f.name}, f.err
}

func TestRouterFallsBackCountyPrefectureProvince(t *testing.T) {
	var calls []string
	r := NewRouter()
	r.Add("222403", "dunhua", fakeSource{name: "dunhua", calls: &calls})
	r.Add("222400", "yanbian", fakeSource{name: "yanbian", calls: &calls})
	r.Add("220000", "jilin", fakeSource{name: "jilin", found: true, calls: &calls})
	q := adapters.Query{Type: adapters.QueryIdentity, Subject: adapters.Subject{IDNumber: "222403199001011234", Name: "x"}}
	a, err := r.Answer(context.Background(), q)
	if err != nil || !a.Found || a.Source != "jilin" {
		t.Fatalf("answer = %+v, %v", a, err)
	}
	if !reflect.DeepEqual(calls, []string{"dunhua", "yanbian", "jilin"}) {
		t.Fatalf("asked %v, want county → prefecture → province", calls)
	}

	calls = nil
	r2 := NewRouter()
	r2.Add("222403", "dunhua", fakeSource{name: "dunhua", found: true, calls: &calls})
	r2.Add("220000", "jilin", fakeSource{name: "jilin", found: true, calls: &calls})
	if a, _ := r2.Answer(context.Background(), q); a.Source != "dunhua" || len(calls) != 1 {
		t.Fatalf("most specific source should answer alone: %+v %v", a, calls)
	}
}

func TestRouterErrors(t *testing.T) {
	var calls []string
	r := NewRouter()
	r.Add("210000", "liaoning", fakeSource{name: "liaoning", calls: &calls})
	q := adapters.Query{Subject: adapters.Subject{IDNumber: "222403199001011234"}}
	if _, err := r.Answer(context.Background(), q); !errors.Is(err, ErrNoSource) {
		t.Fatalf("uncovered region: %v", err)
	}
	boom := errors.New("down")
	r.Add("220000", "jilin", fakeSource{name: "jilin", err: boom, calls: &calls})
	if _, err := r.Answer(context.Background(), q); !errors.Is(err, boom) {
		t.Fatalf("source error must surface as transient: %v", err)
	}
}

func TestMinimise(t *testing.T) {
	// What a source returned: the documented identity fields, one field of
	// another type and one nobody documented.
	full := map[string]any{"as_of": "x", "id_name_match": true, "status": "active", "members": []any{}, "ethnicity": "汉"}
	id := adapters.QueryIdentity
	if got := Minimise(id, full, []string{"as_of", "status", "members", "zz"}); !reflect.DeepEqual(got, map[string]any{"as_of": "x", "status": "active"}) {
		t.Fatalf("allow-list: got %v", got)
	}
	want := map[string]any{"as_of": "x", "id_name_match": true, "status": "active"}
	if got := Minimise(id, full, nil); !reflect.DeepEqual(got, want) {
		t.Fatalf("no allow-list must keep the documented fields only: %v", got)
	}
	if got := Minimise(id, full, []string{}); len(got) != 0 {
		t.Fatalf("empty allow-list should keep none: %v", got)
	}
	if len(full) != 5 {
		t.Fatal("input modified")
	}
}

// TestDocumentedFieldsAreTheReceiptSchemas: every query type's documented
// field set is exactly answerable by the receipt schema, so a minimised
// answer can always be sealed.
func TestDocumentedFieldsAreTheReceiptSchemas(t *testing.T) {
	raw, ok := mustSchemas(t).Raw("receipt.v1")
	if !ok {
		t.Fatal("no receipt schema")
	}
	var doc struct {
		Properties struct {
			Body struct {
				Properties struct {
					Answer struct {
						Properties map[string]json.RawMessage `json:"properties"`
					} `json:"answer"`
				} `json:"properties"`
			} `json:"body"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	inSchema := doc.Properties.Body.Properties.Answer.Properties
	seen := map[string]bool{}
	for _, qt := range adapters.AllQueryTypes() {
		if len(qt.Fields()) == 0 {
			t.Errorf("%s documents no fields", qt)
		}
		for _, f := range qt.Fields() {
			seen[f] = true
			if _, ok := inSchema[f]; !ok {
				t.Errorf("%s field %s is not in the receipt schema", qt, f)
			}
		}
	}
	for f := range inSchema {
		if !seen[f] {
			t.Errorf("receipt schema answer field %s is documented for no query type", f)
		}
	}
}

func mustSchemas(t *testing.T) *schemas.Set {
	s, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAllowList(t *testing.T) {
	al := NewAllowList([]config.Agency{{ID: "edu", Allow: []config.Allow{
		{Query: "household", Fields: []string{"members"}, Purposes: []string{"school-admission"}},
		{Query: "identity"},
		{Query: "residence", Fields: []string{}},
	}}})
	cases := []struct {
		r      AuthRequest
		ok     bool
		reason string
	}{
		{AuthRequest{Agency: "edu", Query: "household", Purpose: "school-admission"}, true, ""},
		{AuthRequest{Agency: "edu", Query: "household", Purpose: "curiosity"}, false, ReasonPurposeNotAllowed},
		{AuthRequest{Agency: "edu", Query: "criminal_record", Purpose: "school-admission"}, false, ReasonQueryNotAllowed},
		{AuthRequest{Agency: "edu", Query: "identity", Purpose: "anything"}, true, ""},
		{AuthRequest{Agency: "bank", Query: "identity", Purpose: "kyc"}, false, ReasonUnknownAgency},
	}
	for _, c := range cases {
		a := al.authorise(c.r)
		if a.Allowed != c.ok || a.Reason != c.reason {
			t.Errorf("%+v → %+v", c.r, a)
		}
		if c.ok && (a.Basis.ID == "" || a.Basis.Digest == "") {
			t.Errorf("%+v: allowed decision must cite its basis", c.r)
		}
	}
	if a := al.authorise(AuthRequest{Agency: "edu", Query: "household", Purpose: "school-admission"}); !reflect.DeepEqual(a.Fields, []string{"members"}) {
		t.Fatalf("fields %v", a.Fields)
	}
	// An omitted or empty field list (as YAML may write it) means every
	// field, never none.
	for _, q := range []string{"identity", "residence"} {
		if a := al.authorise(AuthRequest{Agency: "edu", Query: q, Purpose: "x"}); a.Fields != nil {
			t.Fatalf("%s: fields %v, want nil (all)", q, a.Fields)
		}
	}
}

// TestRouterRuleEveryStep walks the written rule of Router step by step:
// which sources are asked, in which order, and who answers.
func TestRouterRuleEveryStep(t *testing.T) {
	type src struct {
		region, name string
		holds        bool
		err          error
	}
	down := errors.New("county database down")
	cases := []struct {
		name    string
		sources []src
		id      string
		asked   []string
		answer  string // source that answered; "" for none
		err     error
	}{
		{"county holds the subject", []src{{"220582", "jian", true, nil}, {"220500", "tonghua", true, nil}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"jian"}, "jian", nil},
		{"county does not hold: prefecture", []src{{"220582", "jian", false, nil}, {"220500", "tonghua", true, nil}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"jian", "tonghua"}, "tonghua", nil},
		{"neither county nor prefecture: province", []src{{"220582", "jian", false, nil}, {"220500", "tonghua", false, nil}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"jian", "tonghua", "jilin"}, "jilin", nil},
		{"no county source: prefecture first", []src{{"220500", "tonghua", true, nil}, {"220000", "jilin", true, nil}},
			"220521199001011234", []string{"tonghua"}, "tonghua", nil},
		{"no county or prefecture source: province", []src{{"220500", "tonghua", true, nil}, {"220000", "jilin", true, nil}},
			"222403199001011234", []string{"jilin"}, "jilin", nil},
		{"a neighbouring county's source is not asked", []src{{"220581", "meihekou", true, nil}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"jilin"}, "jilin", nil},
		{"two sources at one level, in registration order", []src{{"220500", "tonghua-a", false, nil}, {"220500", "tonghua-b", true, nil}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"tonghua-a", "tonghua-b"}, "tonghua-b", nil},
		{"a retired county code still reaches its prefecture", []src{{"220100", "changchun", true, nil}},
			"220181199001011234", []string{"changchun"}, "changchun", nil},
		{"nobody holds the subject: the last not-found", []src{{"220582", "jian", false, nil}, {"220000", "jilin", false, nil}},
			"220582199001011234", []string{"jian", "jilin"}, "", nil},
		{"no source on the chain: no jurisdiction", []src{{"220582", "jian", true, nil}},
			"222403199001011234", nil, "", ErrNoSource},
		{"another province: no jurisdiction", []src{{"220000", "jilin", true, nil}},
			"110101199001011234", nil, "", ErrNoSource},
		{"a failing county source is not skipped", []src{{"220582", "jian", false, down}, {"220000", "jilin", true, nil}},
			"220582199001011234", []string{"jian"}, "", down},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls []string
			r := NewRouter()
			for _, s := range c.sources {
				r.Add(s.region, s.name, fakeSource{name: s.name, found: s.holds, err: s.err, calls: &calls})
			}
			a, err := r.Answer(context.Background(), adapters.Query{Type: adapters.QueryIdentity, Subject: adapters.Subject{IDNumber: c.id, Name: "x"}})
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(calls, c.asked) {
				t.Fatalf("asked %v, want %v", calls, c.asked)
			}
			if c.err == nil && (a.Found != (c.answer != "") || (c.answer != "" && a.Source != c.answer)) {
				t.Fatalf("answer %+v, want from %q", a, c.answer)
			}
		})
	}
}
