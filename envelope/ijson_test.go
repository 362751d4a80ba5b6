package envelope

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// signWithHeader signs payload under an exact protected header with an
// Ed25519 key, for headers go-jose would never write.
func signWithHeader(k ed25519.PrivateKey, header, payload string) []byte {
	e := base64.RawURLEncoding.EncodeToString
	input := e([]byte(header)) + "." + e([]byte(payload))
	return []byte(input + "." + e(ed25519.Sign(k, []byte(input))))
}

// requestJSON is the JSON of a valid request, for byte-level edits.
func requestJSON(t testing.TB) string {
	t.Helper()
	b, err := json.Marshal(request())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit replaces old by new exactly once in s.
func edit(t testing.TB, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("%q occurs %d times in %s", old, strings.Count(s, old), s)
	}
	return strings.Replace(s, old, new, 1)
}

// verifyBoth runs Verify and VerifyOffline on raw and returns both errors
// and how many keys they looked up.
func verifyBoth(t *testing.T, w *world, raw []byte) (online, offline error, lookups int64) {
	t.Helper()
	spy := &countingResolver{KeyResolver: w.reg}
	v := w.verifier()
	v.Keys = spy
	_, online = v.Verify(context.Background(), raw)
	_, offline = VerifyOffline(raw, spy, v.Schemas)
	return online, offline, spy.n.Load()
}

// TestIJSONRefusals: signed messages whose header or payload is not I-JSON
// are malformed, before any key is looked up, and say what and where.
func TestIJSONRefusals(t *testing.T) {
	w := newWorld(t)
	sk := w.ed.Signer.(ed25519.PrivateKey)
	hdr := `{"alg":"EdDSA","kid":"court-a/k1"}`
	req := requestJSON(t)
	body := `"body":{"query":"identity",`
	deep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	cases := []struct {
		name, header, payload string
		detail                string // Detail must contain it
	}{
		{name: "top level", payload: edit(t, req, `"agency":"court-a",`, `"agency":"court-a","agency":"court-a",`),
			detail: `payload is not I-JSON: duplicate member name "agency" at /agency`},
		{name: "top level, different values", payload: edit(t, req, `"agency":"court-a",`, `"agency":"court-b","agency":"court-a",`),
			detail: `duplicate member name "agency" at /agency`},
		{name: "in body", payload: edit(t, req, body, body+`"query":"kinship",`),
			detail: `duplicate member name "query" at /body/query`},
		{name: "in subject", payload: edit(t, req, `"name":"张伟"`, `"name":"张伟","name":"李四"`),
			detail: `duplicate member name "name" at /body/subject/name`},
		{name: "in nested arrays of objects", payload: edit(t, req, body, body+`"x":[{"c":1},{"b":[{"c":1},{"c":1,"c":2}]}],`),
			detail: `duplicate member name "c" at /body/x/1/b/1/c`},
		{name: "in purpose", payload: edit(t, req, `"basis":"notarisation"`, `"basis":"notarisation","basis":"audit"`),
			detail: `duplicate member name "basis" at /purpose/basis`},
		{name: "escaped equal at top level", payload: edit(t, req, `"agency":"court-a",`, `"agency":"court-a","\u0061gency":"court-b",`),
			detail: `duplicate member name "agency" at /agency`},
		{name: "escaped equal names", payload: edit(t, req, body, body+`"x":{"a":1,"\u0061":2},`),
			detail: `duplicate member name "a" at /body/x/a`},
		{name: "name needing pointer escapes", payload: edit(t, req, body, body+`"a/~b":1,"a\/~b":2,`),
			detail: `duplicate member name "a/~b" at /body/a~1~0b`},
		{name: "in header", header: `{"alg":"EdDSA","kid":"court-a/k1","kid":"court-b/k1"}`,
			detail: `protected header is not I-JSON: duplicate member name "kid" at /kid`},
		{name: "escaped equal in header", header: `{"alg":"EdDSA","\u0061lg":"EdDSA","kid":"court-a/k1"}`,
			detail: `protected header is not I-JSON: duplicate member name "alg" at /alg`},
		{name: "lone high surrogate", payload: edit(t, req, `"basis":"notarisation"`, `"basis":"nota\ud800risation"`),
			detail: `payload is not I-JSON: lone high surrogate \ud800 at /purpose/basis`},
		{name: "high surrogate at the end", payload: edit(t, req, `"basis":"notarisation"`, `"basis":"notarisation\uD800"`),
			detail: `lone high surrogate \ud800 at /purpose/basis`},
		{name: "high surrogate then not a low one", payload: edit(t, req, `"basis":"notarisation"`, `"basis":"\ud800\u0041"`),
			detail: `lone high surrogate \ud800 at /purpose/basis`},
		{name: "two high surrogates", payload: edit(t, req, `"basis":"notarisation"`, `"basis":"\ud83d\ud83d\ude00"`),
			detail: `lone high surrogate \ud83d at /purpose/basis`},
		{name: "lone low surrogate", payload: edit(t, req, `"case_ref":"`, `"case_ref":"\udc00`),
			detail: `lone low surrogate \udc00 at /purpose/case_ref`},
		{name: "lone surrogate in a member name", payload: edit(t, req, body, body+`"\ud800":1,`),
			detail: `lone high surrogate \ud800 in a member name at /body`},
		{name: "invalid UTF-8", payload: edit(t, req, `"name":"张伟"`, "\"name\":\"\xff\""),
			detail: `payload is not I-JSON: invalid UTF-8 at /body/subject/name`},
		{name: "UTF-8 encoded surrogate", payload: edit(t, req, `"name":"张伟"`, "\"name\":\"\xed\xa0\x80\""),
			detail: `invalid UTF-8 at /body/subject/name`},
		{name: "invalid UTF-8 in a member name", payload: edit(t, req, `"purpose":{`, "\"purpose\":{\"\xc3\":1,"),
			detail: `invalid UTF-8 in a member name at /purpose`},
		{name: "nesting deeper than 64", payload: edit(t, req, body, body+`"x":`+deep+`,`),
			detail: `payload is not I-JSON: nesting deeper than 64 at /body/x/0/0/0`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.header == "" {
				c.header = hdr
			}
			if c.payload == "" {
				c.payload = req
			}
			online, offline, lookups := verifyBoth(t, w, signWithHeader(sk, c.header, c.payload))
			if lookups != 0 {
				t.Errorf("%d key lookups before the message was found malformed", lookups)
			}
			for name, err := range map[string]error{"Verify": online, "VerifyOffline": offline} {
				var e *Error
				if !errors.As(err, &e) || e.Reason != ReasonMalformed {
					t.Fatalf("%s: want malformed, got %v", name, err)
				}
				if !strings.Contains(e.Detail, c.detail) {
					t.Fatalf("%s: detail %q, want %q", name, e.Detail, c.detail)
				}
				if e.Verified != nil {
					t.Fatalf("%s: malformed refusal carries a message", name)
				}
			}
		})
	}
}

// TestIJSONAccepts: the same name in different objects, escapes that decode
// to distinct names, surrogate pairs and nesting up to MaxDepth are I-JSON.
func TestIJSONAccepts(t *testing.T) {
	w := newWorld(t)
	sk := w.ed.Signer.(ed25519.PrivateKey)
	hdr := `{"alg":"EdDSA","kid":"court-a/k1"}`
	// A kinship request: subject and related_subject share id_number and name.
	kinship := request1K()
	kinship.Purpose.CaseRef = `(2026)长证字第1234号 😀`
	b, err := json.Marshal(kinship)
	if err != nil {
		t.Fatal(err)
	}
	valid := []string{
		string(b),
		edit(t, string(b), `😀`, `\ud83d\ude00`),
		edit(t, string(b), `"basis":"notarisation"`, `"b\u0061sis":"n\u006ftarisation"`),
	}
	for _, p := range valid {
		online, offline, _ := verifyBoth(t, w, signWithHeader(sk, hdr, p))
		if online != nil || offline != nil {
			t.Fatalf("%s\nVerify: %v\nVerifyOffline: %v", p, online, offline)
		}
	}
	for _, doc := range []string{
		`{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":{"b":{"a":[]}}}`,
		`{"a":1,"A":2,"\u00e9":3,"e\u0301":4,"a ":5}`,
		`{"x":"\ud83d\ude00\u0000\n\"\\\/","y":"\uDBFF\uDFFF"}`,
		`{"n":1e400,"m":-0.0000001,"big":123456789012345678901234567890}`,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat(`{"a":`, MaxDepth-1) + `{}` + strings.Repeat("}", MaxDepth-1),
		` "x" `,
	} {
		if err := checkIJSON([]byte(doc)); err != nil {
			t.Errorf("%.80s: %v", doc, err)
		}
	}
}

// TestIJSONSyntax: what is not one JSON text is a syntax error, not an
// I-JSON violation.
func TestIJSONSyntax(t *testing.T) {
	for _, doc := range []string{``, ` `, `{`, `{"a":1`, `{"a":1}}`, `{"a":1} {}`, `{"a":1} x`, `[1,]`, `{"a" 1}`, `"\u12"`, `{'a':1}`} {
		err := checkIJSON([]byte(doc))
		var ie *ijsonError
		if err == nil || errors.As(err, &ie) {
			t.Errorf("%q: want a syntax error, got %v", doc, err)
		}
	}
}

// FuzzCheckIJSON: checkIJSON accepts only what encoding/json finds valid,
// reports a syntax error only where encoding/json finds one (an I-JSON
// violation may be found before a later syntax error), and accepts only text
// without a duplicate name at the top level (the one level this oracle sees).
func FuzzCheckIJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"\u0061":2}`, `{"a":[{"b":1},{"b":"\ud83d\ude00"}]}`, `"\udc00"`, "\"\xff\"", `[[[[]]]]`, `{"a":1} {}`, `{"a" 1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkIJSON(b)
		var ie *ijsonError
		syntax, valid := err != nil && !errors.As(err, &ie), json.Valid(b)
		if (err == nil && !valid) || (syntax && valid) {
			t.Fatalf("checkIJSON %v, json.Valid %v", err, json.Valid(b))
		}
		if err != nil {
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if tok, _ := dec.Token(); tok != json.Delim('{') {
			return
		}
		seen := map[string]bool{}
		for dec.More() {
			name, _ := dec.Token()
			if seen[name.(string)] {
				t.Fatalf("accepted duplicate %q", name)
			}
			seen[name.(string)] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckIJSON is the I-JSON pass over a 1 KiB request payload.
func BenchmarkCheckIJSON(b *testing.B) {
	doc, _ := json.Marshal(request1K())
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if err := checkIJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}
