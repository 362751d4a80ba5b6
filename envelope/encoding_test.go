package envelope

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
)

// TestOneEncodingPerMessage: a signed message has one encoding. Go's
// base64 decoder skips CR and LF, so a copy with a newline inserted in any
// part would verify under a digest of its own; it is malformed instead.
func TestOneEncodingPerMessage(t *testing.T) {
	w := newWorld(t)
	v := w.verifier()
	good := string(mustSign(t, w.ed, request()))
	if _, err := v.Verify(context.Background(), []byte(good)); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for i := range parts {
		for _, junk := range []string{"\n", "\r", "\r\n", " ", "=", "+", "/"} {
			p := append([]string(nil), parts...)
			p[i] = p[i][:4] + junk + p[i][4:]
			copy := strings.Join(p, ".")
			if _, err := v.Verify(context.Background(), []byte(copy)); reasonOf(t, err) != ReasonMalformed {
				t.Errorf("part %d with %q inserted: %v, want malformed", i+1, junk, err)
			}
			if _, err := VerifyOffline([]byte(copy), w.reg, nil); reasonOf(t, err) != ReasonMalformed {
				t.Errorf("offline, part %d with %q inserted: %v, want malformed", i+1, junk, err)
			}
		}
	}
}

// TestHeaderNamesAreExact: "kid" and "Kid" in one protected header would
// name one key to Certless and another to JOSE libraries; such a header is
// malformed.
func TestHeaderNamesAreExact(t *testing.T) {
	w := newWorld(t)
	v := w.verifier()
	p := request()
	p.Agency = "court-b"
	payload := mustSign(t, w.b, p)
	body := strings.Split(string(payload), ".")[1]
	for _, hdr := range []string{
		`{"alg":"EdDSA","kid":"court-a/k1","Kid":"court-b/k1"}`,
		`{"alg":"EdDSA","Alg":"none","kid":"court-b/k1"}`,
		`{"alg":"EdDSA","kid":"court-b/k1","CRIT":["x"]}`,
	} {
		// Refused before any key is looked up or signature checked.
		h := base64.RawURLEncoding.EncodeToString([]byte(hdr))
		raw := []byte(h + "." + body + "." + strings.Split(string(payload), ".")[2])
		if _, err := v.Verify(context.Background(), raw); reasonOf(t, err) != ReasonMalformed {
			t.Errorf("header %s: %v, want malformed", hdr, err)
		}
	}
}
