package envelope

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

// scannerCases are texts for checkIJSON's scanner, each with the error it
// must report ("" to accept), which must also be streamIJSON's.
func scannerCases() []struct{ doc, want string } {
	nested := func(open, leaf, close string, n int) string {
		return strings.Repeat(open, n) + leaf + strings.Repeat(close, n)
	}
	members := func(n int) string { // "k00":0,"k01":1,...
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"k%02d":%d,`, i, i)
		}
		return b.String()
	}
	return []struct{ doc, want string }{
		// names with escapes, compared after unescaping
		{`{"\"":1,"\\":2,"\/":3,"A":4,"\u0042":5,"\n":6,"\u00e9":7}`, ``},
		{`{"\"":1,"\u0022":2}`, `duplicate member name "\"" at /"`},
		{`{"\\":1,"\u005c":2}`, `duplicate member name "\\" at /\`},
		{`{"\\":1,"\u005C":2}`, `duplicate member name "\\" at /\`},
		{`{"/":1,"\/":2}`, `duplicate member name "/" at /~1`},
		{`{"\/":1,"/":2}`, `duplicate member name "/" at /~1`},
		{`{"~":1,"\u007e":2}`, `duplicate member name "~" at /~0`},
		{`{"A":1,"\u0041":2}`, `duplicate member name "A" at /A`},
		{`{"\u0041":1,"A":2}`, `duplicate member name "A" at /A`},
		{`{"a\"b":1,"a\u0022b":2}`, `duplicate member name "a\"b" at /a"b`},
		{`{"\t\b\f\r\n":1,"\u0009\u0008\u000c\u000D\u000a":2}`, `duplicate member name "\t\b\f\r\n" at /` + "\t\b\f\r\n"},
		{`{"\u0000":1,"\u0000":2}`, `duplicate member name "\x00" at /` + "\x00"},
		{`{"é":1,"\u00E9":2}`, `duplicate member name "é" at /é`},
		{`{"😀":1,"\ud83d\ude00":2}`, `duplicate member name "😀" at /😀`},
		{`{"x\ud83d\ude00y":1,"x\uD83D\uDE00y":2}`, `duplicate member name "x😀y" at /x😀y`},
		{`{"\\u0041":1,"\u0041":2}`, ``}, // an escaped backslash, then u0041
		{`{"a\/b":{"c":"\udc00"}}`, `lone low surrogate \udc00 at /a~1b/c`},
		{`{"a\u0000":{"b":[1,"` + "\xff" + `"]}}`, `invalid UTF-8 at /a` + "\x00" + `/b/1`},
		{`{"é":{"é":1,"\u00e9":2}}`, `duplicate member name "é" at /é/é`},
		// strings with structural characters, and backslashes at their ends
		{`{"a":"{[:,]}\"","b":"}","c":"]","d":",","e":":","f":"{","g":"[","a":1}`, `duplicate member name "a" at /a`},
		{`{"{":1,"}":2,"[":3,"]":4,":":5,",":6,"{":7}`, `duplicate member name "{" at /{`},
		{`["a\",\"b", "\\", "x\\\"y", "\"", "\\\\", "{\"a\":1,\"a\":2}"]`, ``},
		{`{"k":"\\","k":1}`, `duplicate member name "k" at /k`},
		{`{"k":"\\\\\"","k":1}`, `duplicate member name "k" at /k`},
		{`{"k\\":1,"k":2,"k\\\\":3,"k\u005c":4}`, `duplicate member name "k\\" at /k\`},
		{`{"a":"\"b\":1,\"b\":2","b":"\udc00"}`, `lone low surrogate \udc00 at /b`},
		{`{"x":"\\u","y":"\\ud800","z":"\\\udc00"}`, `lone low surrogate \udc00 at /z`},
		// empty objects and arrays
		{`{}`, ``},
		{`[]`, ``},
		{` { } `, ``},
		{`{"a":{},"b":[],"c":[{}],"d":{"a":{}},"e":[[]]}`, ``},
		{`[{},{},[],[[]],{"a":[]}]`, ``},
		{`{"a":{},"a":[]}`, `duplicate member name "a" at /a`},
		{`[[],[{}],{"x":[]},{},"\udc00"]`, `lone low surrogate \udc00 at /4`},
		{`{"a":[],"b":{},"c":[{},[]],"d":"\ud800"}`, `lone high surrogate \ud800 at /d`},
		// depth up to MaxDepth and beyond
		{nested("[", "", "]", MaxDepth), ``},
		{nested("[", "", "]", MaxDepth+1), `nesting deeper than 64 at ` + strings.Repeat("/0", MaxDepth)},
		{nested(`{"a":`, "1", "}", MaxDepth), ``},
		{nested(`{"a":`, "{}", "}", MaxDepth-1), ``},
		{nested(`{"a":`, "{}", "}", MaxDepth), `nesting deeper than 64 at ` + strings.Repeat("/a", MaxDepth)},
		{nested(`{"a":`, "[]", "}", MaxDepth), `nesting deeper than 64 at ` + strings.Repeat("/a", MaxDepth)},
		{nested("[", "[1,2,{}]", "]", MaxDepth-1), `nesting deeper than 64 at ` + strings.Repeat("/0", MaxDepth-1) + "/2"},
		{nested("[", "[1,2,3]", "]", MaxDepth-1), ``},
		{nested(`[{"a":`, `"\udc00"`, `}]`, 20), `lone low surrogate \udc00 at ` + strings.Repeat("/0/a", 20)},
		{nested(`{"a":[1,`, `{"b":1,"b":2}`, `]}`, 30), `duplicate member name "b" at ` + strings.Repeat("/a/1", 30) + "/b"},
		{`[` + nested("[", "", "]", 40) + `,` + nested(`{"x":`, `"\ud800"`, "}", 30) + `]`, `lone high surrogate \ud800 at /1` + strings.Repeat("/x", 30)},
		// numbers and literals
		{`{"n":1e10,"m":-1.5E-7,"o":0,"p":1E+2,"q":-0,"r":0.5e-0,"n":2}`, `duplicate member name "n" at /n`},
		{`[1e5,2E-3,-0.5e+7,123456789012345678901234567890,"\udc00"]`, `lone low surrogate \udc00 at /4`},
		{`[true,false,null,"\ud800"]`, `lone high surrogate \ud800 at /3`},
		{`{"a":true,"b":false,"c":null,"d":1e2}`, ``},
		{`{"a":[1e2],"b":{"c":-1E-2},"a":null}`, `duplicate member name "a" at /a`},
		{`1e400`, ``},
		{` -0.0e-0 `, ``},
		{`null`, ``},
		// whitespace everywhere
		{" \t\n\r{ \t\n\r\"a\" \t\n\r: \t\n\r[ 1 , 2e1 , true , { } ] \r\n, \"b\" : null , \"a\" : null } \n", `duplicate member name "a" at /a`},
		{" [ \"x\" , \t\"\\udc00\" ] ", `lone low surrogate \udc00 at /1`},
		{" \"\\udc00\"\n", `lone low surrogate \udc00 at "" (the root)`},
		{"\"\xff\"", `invalid UTF-8 at "" (the root)`},
		// many members: a linear scan, then a map
		{`{` + members(15) + `"k00":0}`, `duplicate member name "k00" at /k00`},
		{`{` + members(16) + `"k00":0}`, `duplicate member name "k00" at /k00`},
		{`{` + members(16) + `"k15":0}`, `duplicate member name "k15" at /k15`},
		{`{` + members(17) + `"k16":0}`, `duplicate member name "k16" at /k16`},
		{`{` + members(40) + `"k39":0}`, `duplicate member name "k39" at /k39`},
		{`{` + members(40) + `"k00":0}`, `duplicate member name "k00" at /k00`},
		{`{` + members(40) + `"\u006b07":0}`, `duplicate member name "k07" at /k07`},
		{`{` + members(40) + `"k40":0}`, ``},
		{`{"\u006b03":1,` + members(40) + `"z":0}`, `duplicate member name "k03" at /k03`},
		{`{"x":1,"y":{` + members(40) + `"z":0},"z":2,"x":3}`, `duplicate member name "x" at /x`},
		{`{` + members(20) + `"y":{` + members(20) + `"z":0},"z":2,"y":3}`, `duplicate member name "y" at /y`},
		{`{` + members(20) + `"y":{` + members(20) + `"k05":0}}`, `duplicate member name "k05" at /y/k05`},
		{`[{` + members(20) + `"a":0},{` + members(20) + `"a":0},{"k19":1,"k19":2}]`, `duplicate member name "k19" at /2/k19`},
		// the same name in other objects, and names reused after one closes
		{`{"a":{"b":1},"b":2}`, ``},
		{`{"a":{"b":1,"c":2},"c":3,"b":4,"a":5}`, `duplicate member name "a" at /a`},
		{`{"a":[{"b":1},{"b":2}],"b":{"a":{"b":3}}}`, ``},
		{`{"a":{"x":1},"b":{"x":1},"c":{"x":1,"y":{"x":1}},"c":0}`, `duplicate member name "c" at /c`},
		{`{"a":{"\u0062":1},"b":{"b":1,"\u0062":2}}`, `duplicate member name "b" at /b/b`},
		// lone surrogates and invalid UTF-8 in names
		{`{"a":1,"b\udc00":2}`, `lone low surrogate \udc00 in a member name at "" (the root)`},
		{"{\"a\":{\"\xc3\":1}}", `invalid UTF-8 in a member name at /a`},
		{"{\"a\":{\"\\n\xc3\":1}}", `invalid UTF-8 in a member name at /a`},
		{"{\"a\":\"\\n\xed\xa0\x80\"}", `invalid UTF-8 at /a`},
	}
}

// TestIJSONScanner: checkIJSON's scanner of valid JSON finds what the
// streaming check finds, at the same pointer.
func TestIJSONScanner(t *testing.T) {
	for _, c := range scannerCases() {
		if !json.Valid([]byte(c.doc)) {
			t.Fatalf("%.80q is not valid JSON", c.doc)
		}
		err := checkIJSON([]byte(c.doc))
		var ie *ijsonError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%.80q: %v", c.doc, err)
		case c.want != "" && (!errors.As(err, &ie) || err.Error() != c.want):
			t.Errorf("%.80q:\n got %v\nwant %s", c.doc, err, c.want)
		}
		sameAsStream(t, []byte(c.doc))
	}
}

// TestIJSONInvalid: text that is not valid JSON gets the streaming check's
// answer, an I-JSON violation before the syntax error included.
func TestIJSONInvalid(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"a":1,"a":2`, `duplicate member name "a" at /a`},
		{`{"a":"\udc00"`, `lone low surrogate \udc00 at /a`},
		{`[1,2,"\ud800",]`, `lone high surrogate \ud800 at /2`},
		{`{"a":1} {"a":1,"a":1}`, `data after the JSON value`},
		{`{"a":1`, `unexpected EOF`},
		{``, `unexpected EOF`},
		{`[1,]`, `invalid character ']' looking for beginning of value`},
	} {
		err := checkIJSON([]byte(c.doc))
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %s", c.doc, err, c.want)
		}
		sameAsStream(t, []byte(c.doc))
	}
}

// sameAsStream fails t unless checkIJSON and streamIJSON agree on b.
func sameAsStream(t *testing.T, b []byte) {
	t.Helper()
	got, want := checkIJSON(b), streamIJSON(b)
	var gi, wi *ijsonError
	if (got == nil) != (want == nil) || errors.As(got, &gi) != errors.As(want, &wi) ||
		(got != nil && got.Error() != want.Error()) {
		t.Fatalf("%.80q: checkIJSON %v, streamIJSON %v", b, got, want)
	}
}

// FuzzIJSONScanner: checkIJSON answers exactly as streamIJSON, the
// streaming check it replaced, on any input.
func FuzzIJSONScanner(f *testing.F) {
	for _, c := range scannerCases() {
		f.Add([]byte(c.doc))
	}
	doc, _ := json.Marshal(request1K())
	f.Add(doc)
	f.Fuzz(sameAsStream)
}

// TestIJSONScannerRandom: on random valid JSON with names that often repeat
// (spelled differently), objects past maxListedNames members and nesting
// around MaxDepth, checkIJSON answers exactly as streamIJSON.
func TestIJSONScannerRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	strs := []string{`a`, `\u0061`, `b`, `/`, `\/`, `~`, `\u007e`, `é`, `\u00e9`, `\u00E9`, `😀`, `\ud83d\ude00`,
		`\\`, `\"`, `\u005c`, `{}[],:`, `\n`, `\u000a`, ``, ` `, `k1`, `k2`, `k3`, `k4`, `k5`, `k6`, `k7`, `k8`, `k9`}
	bad := []string{`\ud800`, `\udc00`, "\xff", "\xed\xa0\x80"}
	str := func() string {
		if rnd.IntN(200) == 0 {
			return `"` + bad[rnd.IntN(len(bad))] + `"`
		}
		return `"` + strs[rnd.IntN(len(strs))] + strs[rnd.IntN(len(strs))] + `"`
	}
	ws := func() string { return [...]string{"", "", "", " ", "\n\t", "\r "}[rnd.IntN(6)] }
	budget := 0 // containers left in this document
	var value func(b *strings.Builder, depth int)
	value = func(b *strings.Builder, depth int) {
		b.WriteString(ws())
		k := rnd.IntN(10)
		if k < 5 {
			if budget == 0 || depth > MaxDepth+1 {
				k = 5
			} else {
				budget--
			}
		}
		switch {
		case k < 3:
			// a few names from strs, or many distinct ones and maybe
			// a repeat of one of them at the end
			n, many := rnd.IntN(4), rnd.IntN(6) == 0
			if many {
				n = 1 + rnd.IntN(3*maxListedNames)
			}
			b.WriteByte('{')
			for i := range n {
				if i > 0 {
					b.WriteByte(',')
				}
				name := `"` + strs[rnd.IntN(len(strs))] + `"`
				if many {
					if i == n-1 && rnd.IntN(2) == 0 {
						i = rnd.IntN(n)
					}
					name = fmt.Sprintf(`"%s%d"`, [...]string{"k", `\u006b`, `\u006B`}[rnd.IntN(3)], i)
				}
				b.WriteString(ws() + name + ws() + ":")
				value(b, depth+1)
			}
			b.WriteString(ws() + "}")
		case k < 5:
			b.WriteByte('[')
			for i := range rnd.IntN(4) {
				if i > 0 {
					b.WriteByte(',')
				}
				value(b, depth+1)
			}
			b.WriteString(ws() + "]")
		case k < 7:
			b.WriteString(str())
		default:
			b.WriteString([...]string{"0", "-1.5e-3", "1E+400", "true", "false", "null"}[rnd.IntN(6)])
		}
		b.WriteString(ws())
	}
	counts := map[bool]int{}
	for range 3000 {
		budget = 1 + rnd.IntN(40)
		var b strings.Builder
		if rnd.IntN(10) == 0 { // deep
			for range MaxDepth - 3 + rnd.IntN(6) {
				if rnd.IntN(2) == 0 {
					b.WriteString(`[`)
				} else {
					b.WriteString(`{"a":`)
				}
			}
		}
		prefix := b.String()
		value(&b, strings.Count(prefix, "[")+strings.Count(prefix, "{"))
		for i := len(prefix) - 1; i >= 0; i-- {
			switch prefix[i] {
			case '[':
				b.WriteByte(']')
			case '{':
				b.WriteByte('}')
			}
		}
		doc := []byte(b.String())
		if !json.Valid(doc) {
			t.Fatalf("generated invalid JSON %q", doc)
		}
		sameAsStream(t, doc)
		counts[checkIJSON(doc) == nil]++
	}
	if counts[true] < 300 || counts[false] < 300 {
		t.Fatalf("accepted %d, refused %d: want a mix", counts[true], counts[false])
	}
}
