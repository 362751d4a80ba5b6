package witness_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/fault"
	"github.com/certless/certless/translog/witness"
)

func TestNewCosignatureVerifier(t *testing.T) {
	s := newCosigner(t, "witness.example/w1")
	vkey := s.Verifier().String()
	v, err := witness.NewCosignatureVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != "witness.example/w1" || v.KeyHash() != s.KeyHash() || v.String() != vkey {
		t.Fatalf("parsed %s (%08x), want %s", v, v.KeyHash(), vkey)
	}
	v2, err := witness.NewCosignatureVerifierFromKey(v.Name(), v.PublicKey())
	if err != nil || v2.String() != vkey {
		t.Fatalf("from key: %v, %v", v2, err)
	}

	// Cosignatures by torchwood's signer verify, and nothing else does.
	text := torchwood.Checkpoint{Origin: "log.example/a", Tree: tlog.Tree{N: 3, Hash: tlog.Hash{1}}}.String()
	sig, err := s.Sign([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify([]byte(text), sig) {
		t.Fatal("torchwood cosignature does not verify")
	}
	if v.Verify([]byte(strings.Replace(text, "3", "4", 1)), sig) {
		t.Fatal("cosignature verifies over another checkpoint")
	}
	sig[len(sig)-1] ^= 1
	if v.Verify([]byte(text), sig) {
		t.Fatal("tampered cosignature verifies")
	}

	_, ed, _ := note.GenerateKey(rand.Reader, "witness.example/w1")
	for _, bad := range []string{
		"",
		ed, // an Ed25519 (0x01) note key, not a cosignature key
		strings.Replace(vkey, "witness.example/w1", "witness.example/w9", 1), // key ID mismatch
		vkey[:len(vkey)-4],
		"witness.example/w1+zzzzzzzz+" + strings.SplitN(vkey, "+", 3)[2],
		strings.Replace(vkey, "+", " +", 1),
	} {
		if _, err := witness.NewCosignatureVerifier(bad); err == nil {
			t.Errorf("NewCosignatureVerifier(%q) accepted", bad)
		}
	}
	if _, err := witness.New(vkey, "ftp://x"); err == nil {
		t.Error("New accepted an ftp URL")
	}
	w, err := witness.New(vkey, "http://127.0.0.1:1/prefix/")
	if err != nil || w.URL != "http://127.0.0.1:1/prefix" || w.Name != "witness.example/w1" {
		t.Fatalf("New: %+v, %v", w, err)
	}
}

func TestAddCheckpoint(t *testing.T) {
	ctx := context.Background()
	fw := newFakeWitness(t, "witness.example/w1")
	w := fw.client(t)
	logS, logV, _ := newLog(t, "log.example/a")
	fw.addLog(logV)
	tr := newTree(t, "a", 12)

	cp5 := tr.checkpoint(t, logS, 5)
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	cs, err := w.AddCheckpoint(ctx, 0, nil, cp5)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Name != w.Name || cs[0].Hash != w.Verifier.KeyHash() {
		t.Fatalf("cosignatures %+v", cs)
	}
	if cs[0].Time.Before(before) || cs[0].Time.After(time.Now()) {
		t.Errorf("cosignature time %v, not now", cs[0].Time)
	}
	if ts, _ := torchwood.CosignatureTimestamp(cs[0].Signature); ts != cs[0].Time.Unix() {
		t.Errorf("torchwood reads timestamp %d, we %d", ts, cs[0].Time.Unix())
	}
	if want := "old 0\n\n" + string(cp5); string(fw.lastBody) != want {
		t.Errorf("request body\n%q\nwant\n%q", fw.lastBody, want)
	}
	if fw.contentType != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", fw.contentType)
	}

	cp12 := tr.checkpoint(t, logS, 12)
	proof := tr.proof(t, 5, 12)
	cs, err = w.AddCheckpoint(ctx, 5, proof, cp12)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString("old 5\n")
	for _, h := range proof {
		want.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	want.WriteString("\n")
	want.Write(cp12)
	if !bytes.Equal(fw.lastBody, want.Bytes()) {
		t.Errorf("request body\n%q\nwant\n%q", fw.lastBody, want.Bytes())
	}

	cosigned, err := witness.AppendCosignatures(cp12, cs...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := witness.Verify(cosigned, logV, []note.Verifier{w.Verifier}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Witnesses(); len(got) != 1 || got[0] != w.Name || v.Tree.N != 12 || v.Origin != "log.example/a" {
		t.Fatalf("verified %+v", v)
	}
	// The cosigned note is still a note the log's key opens.
	if _, err := note.Open(cosigned, note.VerifierList(logV)); err != nil {
		t.Fatal(err)
	}

	// Same size, same root: cosigned again, with no proof.
	if _, err := w.AddCheckpoint(ctx, 12, nil, cp12); err != nil {
		t.Fatalf("re-adding the same checkpoint: %v", err)
	}
}

func TestAddCheckpointConflict(t *testing.T) {
	ctx := context.Background()
	fw := newFakeWitness(t, "witness.example/w1")
	w := fw.client(t)
	logS, logV, _ := newLog(t, "log.example/a")
	fw.addLog(logV)
	tr := newTree(t, "a", 9)
	if _, err := w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, logS, 4)); err != nil {
		t.Fatal(err)
	}

	_, err := w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, logS, 9))
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != 4 || ce.OldSize != 0 || ce.Witness != w.Name {
		t.Fatalf("got %v, want a conflict at size 4", err)
	}
	if fault.IsPermanent(err) {
		t.Error("a conflict must not be permanent: the caller retries from the witness's size")
	}
	// The retry the error asks for succeeds.
	if _, err := w.AddCheckpoint(ctx, ce.Size, tr.proof(t, ce.Size, 9), tr.checkpoint(t, logS, 9)); err != nil {
		t.Fatal(err)
	}

	// A fork at the witness's size: 409 per c2sp.org/tlog-witness.
	fork := newTree(t, "fork", 9)
	_, err = w.AddCheckpoint(ctx, 9, nil, fork.checkpoint(t, logS, 9))
	if !errors.As(err, &ce) || ce.Size != 9 {
		t.Fatalf("fork at the same size: %v", err)
	}
	// A fork further on: the proof does not verify, 422.
	fork.grow(t, "fork", 11)
	_, err = w.AddCheckpoint(ctx, 9, fork.proof(t, 9, 11), fork.checkpoint(t, logS, 11))
	if fault.ReasonOf(err) != "witness_inconsistent" {
		t.Fatalf("fork with a proof: %v (reason %q)", err, fault.ReasonOf(err))
	}

	// Malformed 409 answers are refused.
	fw.override = func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprint(rw, "9\n")
	}
	if _, err := w.AddCheckpoint(ctx, 9, nil, tr.checkpoint(t, logS, 9)); fault.ReasonOf(err) != "witness_bad_response" {
		t.Fatalf("409 without text/x.tlog.size: %v", err)
	}
	fw.override = func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprint(rw, "09\n")
	}
	if _, err := w.AddCheckpoint(ctx, 9, nil, tr.checkpoint(t, logS, 9)); fault.ReasonOf(err) != "witness_bad_response" {
		t.Fatalf("409 with a leading zero: %v", err)
	}
}

func TestAddCheckpointRefusesBadCosignatures(t *testing.T) {
	ctx := context.Background()
	fw := newFakeWitness(t, "witness.example/w1")
	w := fw.client(t)
	logS, logV, _ := newLog(t, "log.example/a")
	fw.addLog(logV)
	tr := newTree(t, "a", 8)
	other := newCosigner(t, "witness.example/other")

	cases := []struct {
		name   string
		tamper func([]byte) []byte
		reason string
	}{
		{"flipped signature bit", func(b []byte) []byte {
			line := strings.TrimSuffix(string(b), "\n")
			i := strings.LastIndex(line, " ")
			raw, _ := base64.StdEncoding.DecodeString(line[i+1:])
			raw[len(raw)-1] ^= 1
			return []byte(line[:i+1] + base64.StdEncoding.EncodeToString(raw) + "\n")
		}, "witness_bad_cosignature"},
		{"another witness's key", func([]byte) []byte {
			signed, _ := note.Sign(&note.Note{Text: textOf(fw.lastBody)}, other)
			return signed[len(textOf(fw.lastBody))+1:]
		}, "witness_no_cosignature"},
		{"over another checkpoint", func(b []byte) []byte {
			text := torchwood.Checkpoint{Origin: "log.example/a", Tree: tlog.Tree{N: 8, Hash: tlog.Hash{7}}}.String()
			signed, _ := note.Sign(&note.Note{Text: text}, fw.signer)
			return signed[len(text)+1:]
		}, "witness_bad_cosignature"},
		{"empty", func([]byte) []byte { return nil }, "witness_bad_response"},
		{"not signature lines", func(b []byte) []byte { return append([]byte("hello\n"), b...) }, "witness_bad_response"},
		{"blank line", func(b []byte) []byte { return append([]byte("\n"), b...) }, "witness_bad_response"},
		{"no final newline", func(b []byte) []byte { return bytes.TrimSuffix(b, []byte("\n")) }, "witness_bad_response"},
		{"too large", func(b []byte) []byte { return bytes.Repeat(b, witness.MaxResponse/len(b)+1) }, "witness_bad_response"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fw.tamper = c.tamper
			// Each case restarts the log at a new origin so the witness's
			// state does not carry over.
			origin := fmt.Sprintf("log.example/case%d", i)
			s, v, _ := newLog(t, origin)
			fw.addLog(v)
			cs, err := w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, s, 8))
			if err == nil {
				t.Fatalf("accepted %+v", cs)
			}
			if fault.ReasonOf(err) != c.reason {
				t.Fatalf("got %v (reason %q), want reason %s", err, fault.ReasonOf(err), c.reason)
			}
		})
	}
	fw.tamper = nil

	// Lines of unknown keys next to the witness's own are ignored.
	fw.tamper = func(b []byte) []byte {
		signed, _ := note.Sign(&note.Note{Text: textOf(fw.lastBody)}, other)
		return append(signed[len(textOf(fw.lastBody))+1:], b...)
	}
	cs, err := w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, logS, 8))
	if err != nil || len(cs) != 1 || cs[0].Name != w.Name {
		t.Fatalf("with an extra unknown line: %+v, %v", cs, err)
	}
}

// textOf is the checkpoint body of an add-checkpoint request body.
func textOf(body []byte) string {
	_, signed, _ := bytes.Cut(body, []byte("\n\n"))
	i := bytes.LastIndex(signed, []byte("\n\n"))
	return string(signed[:i+1])
}

func TestAddCheckpointStatuses(t *testing.T) {
	ctx := context.Background()
	fw := newFakeWitness(t, "witness.example/w1")
	w := fw.client(t)
	logS, logV, _ := newLog(t, "log.example/a")
	tr := newTree(t, "a", 3)
	cp := tr.checkpoint(t, logS, 3)

	// The real answers of the fake witness.
	if _, err := w.AddCheckpoint(ctx, 0, nil, cp); fault.ReasonOf(err) != "witness_unknown_log" {
		t.Fatalf("unknown log: %v", err)
	}
	fw.addLog(logV)
	otherS, _, _ := newLog(t, "log.example/a")
	if _, err := w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, otherS, 3)); fault.ReasonOf(err) != "witness_forbidden" {
		t.Fatalf("log signed with an untrusted key: %v", err)
	}

	for _, c := range []struct {
		code      int
		permanent bool
		reason    string
	}{
		{400, true, "witness_bad_request"},
		{403, true, "witness_forbidden"},
		{404, true, "witness_unknown_log"},
		{422, true, "witness_inconsistent"},
		{410, true, "witness_rejected"},
		{302, true, "witness_bad_response"},
		{204, true, "witness_bad_response"},
		{408, false, ""},
		{429, false, ""},
		{500, false, ""},
		{503, false, ""},
	} {
		fw.override = func(rw http.ResponseWriter, r *http.Request) {
			if c.code == 302 {
				rw.Header().Set("Location", "/elsewhere")
			}
			rw.WriteHeader(c.code)
			if c.code != 204 {
				fmt.Fprint(rw, "refused\x01\nbecause\n")
			}
		}
		_, err := w.AddCheckpoint(ctx, 0, nil, cp)
		if err == nil || fault.IsPermanent(err) != c.permanent || fault.ReasonOf(err) != c.reason {
			t.Errorf("HTTP %d: %v (permanent %v, reason %q)", c.code, err, fault.IsPermanent(err), fault.ReasonOf(err))
			continue
		}
		var se *witness.StatusError
		if !errors.As(err, &se) && c.reason != "witness_bad_response" {
			t.Errorf("HTTP %d: %v is not a *StatusError", c.code, err)
		}
		if se != nil && (se.Code != c.code || (c.code != 204 && se.Body != "refused\uFFFD because")) {
			t.Errorf("HTTP %d: status error %+v", c.code, se)
		}
	}
	fw.override = nil

	// A request that cannot be right is refused before it is sent.
	for name, f := range map[string]func() error{
		"old size beyond the checkpoint": func() error { _, err := w.AddCheckpoint(ctx, 4, nil, cp); return err },
		"negative old size":              func() error { _, err := w.AddCheckpoint(ctx, -1, nil, cp); return err },
		"proof from zero":                func() error { _, err := w.AddCheckpoint(ctx, 0, tlog.TreeProof{{}}, cp); return err },
		"proof too long": func() error {
			_, err := w.AddCheckpoint(ctx, 1, make(tlog.TreeProof, 64), cp)
			return err
		},
		"not a note": func() error { _, err := w.AddCheckpoint(ctx, 0, nil, []byte("log.example/a\n3\n")); return err },
		"not a checkpoint": func() error {
			s, _ := note.Sign(&note.Note{Text: "hello\n"}, logS)
			_, err := w.AddCheckpoint(ctx, 0, nil, s)
			return err
		},
	} {
		fw.lastBody = nil
		if err := f(); fault.ReasonOf(err) != "witness_request_invalid" {
			t.Errorf("%s: %v", name, err)
		}
		if fw.lastBody != nil {
			t.Errorf("%s: request sent", name)
		}
	}

	// Network errors and deadlines are transient.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	wd, _ := witness.New(fw.vkey(), dead.URL)
	if _, err := wd.AddCheckpoint(ctx, 0, nil, cp); err == nil || fault.IsPermanent(err) {
		t.Errorf("closed port: %v", err)
	}
	// The handler waits until the client gives up: the client's deadline
	// closes the connection, which ends the handler. (Closing the server's
	// connections at the deadline as well raced with it: the client could
	// see EOF first.)
	fw.override = func(rw http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := w.AddCheckpoint(short, 0, nil, cp)
	if err == nil || fault.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
}

func TestVerifyKOfN(t *testing.T) {
	ctx := context.Background()
	logS, logV, _ := newLog(t, "log.example/a")
	tr := newTree(t, "a", 6)
	cp := tr.checkpoint(t, logS, 6)

	var vs []note.Verifier
	cosigned := cp
	for i := range 3 {
		fw := newFakeWitness(t, fmt.Sprintf("witness.example/w%d", i+1))
		fw.addLog(logV)
		w := fw.client(t)
		vs = append(vs, w.Verifier)
		if i == 2 {
			continue // w3 never cosigns
		}
		cs, err := w.AddCheckpoint(ctx, 0, nil, cp)
		if err != nil {
			t.Fatal(err)
		}
		if cosigned, err = witness.AppendCosignatures(cosigned, cs...); err != nil {
			t.Fatal(err)
		}
	}

	v, err := witness.Verify(cosigned, logV, vs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Witnesses(), ","); got != "witness.example/w1,witness.example/w2" {
		t.Fatalf("verified witnesses %s", got)
	}
	for _, c := range v.Cosignatures {
		if time.Since(c.Time) > time.Minute {
			t.Errorf("%s cosigned at %v", c.Name, c.Time)
		}
	}

	_, err = witness.Verify(cosigned, logV, vs, 3)
	var me *witness.MissingCosignaturesError
	if !errors.As(err, &me) || fault.ReasonOf(err) != "cosignatures_insufficient" {
		t.Fatalf("3 of 3: %v", err)
	}
	if strings.Join(me.Missing, ",") != "witness.example/w3" || len(me.Verified) != 2 || !strings.Contains(err.Error(), "missing: witness.example/w3") {
		t.Fatalf("3 of 3: %+v: %v", me, err)
	}

	// A tampered cosignature does not count, and is named as invalid.
	lines := strings.Split(string(cosigned), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "— witness.example/w2 ") {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(l, "— witness.example/w2 "))
			raw[20] ^= 1 // inside the signature
			lines[i] = "— witness.example/w2 " + base64.StdEncoding.EncodeToString(raw)
		}
	}
	tampered := []byte(strings.Join(lines, "\n"))
	_, err = witness.Verify(tampered, logV, vs, 2)
	if !errors.As(err, &me) || strings.Join(me.Invalid, ",") != "witness.example/w2" || !strings.Contains(err.Error(), "invalid: witness.example/w2") {
		t.Fatalf("tampered w2: %v", err)
	}
	if _, err := witness.Verify(tampered, logV, vs, 1); err != nil {
		t.Fatalf("1 of 3 with w2 tampered: %v", err)
	}

	// The log's own signature is required.
	_, otherV, _ := newLog(t, "log.example/a")
	if _, err := witness.Verify(cosigned, otherV, vs, 0); fault.ReasonOf(err) != "checkpoint_unverified" {
		t.Fatalf("wrong log key: %v", err)
	}
	// Cosignatures moved onto another checkpoint do not verify.
	cp2 := tr.checkpoint(t, logS, 5)
	n, _ := note.Open(cosigned, note.VerifierList(logV))
	var cs []witness.Cosignature
	for _, s := range n.UnverifiedSigs {
		cs = append(cs, witness.Cosignature{Signature: s})
	}
	moved, err := witness.AppendCosignatures(cp2, cs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := witness.Verify(moved, logV, vs, 1); !errors.As(err, &me) || len(me.Invalid) != 2 {
		t.Fatalf("moved cosignatures: %v", err)
	}

	if _, err := witness.Verify(cosigned, logV, vs, 4); err == nil {
		t.Error("k > n accepted")
	}
	if _, err := witness.Verify(cosigned, logV, []note.Verifier{vs[0], vs[0]}, 1); err == nil {
		t.Error("a witness listed twice accepted")
	}
}

func TestAppendCosignatures(t *testing.T) {
	logS, logV, _ := newLog(t, "log.example/a")
	tr := newTree(t, "a", 2)
	cp := tr.checkpoint(t, logS, 2)
	text := textOf(append([]byte("old 0\n\n"), cp...))
	s1, s2 := newCosigner(t, "witness.example/w1"), newCosigner(t, "witness.example/w2")
	sign := func(s note.Signer) witness.Cosignature {
		signed, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open(signed, note.VerifierList(s1.Verifier(), s2.Verifier()))
		if err != nil {
			t.Fatal(err)
		}
		return witness.Cosignature{Signature: n.Sigs[0]}
	}
	a, b := sign(s1), sign(s2)
	out, err := witness.AppendCosignatures(cp, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "\n"+a.Line()+b.Line()) || !strings.HasPrefix(string(out), string(cp)) {
		t.Fatalf("appended note\n%s", out)
	}
	// A newer cosignature of the same key replaces the older one.
	a2 := a
	a2.Base64 = a.Base64[:len(a.Base64)-4] + "AAA="
	out2, err := witness.AppendCosignatures(out, a2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out2), "— witness.example/w1 ") != 1 || !strings.HasSuffix(string(out2), b.Line()+a2.Line()) {
		t.Fatalf("replaced note\n%s", out2)
	}
	if _, err := note.Open(out2, note.VerifierList(logV)); err != nil {
		t.Fatal(err)
	}
	bad := a
	bad.Hash++
	if _, err := witness.AppendCosignatures(cp, bad); err == nil {
		t.Error("a cosignature whose key ID disagrees with its signature accepted")
	}
	if _, err := witness.AppendCosignatures([]byte("not a note"), a); err == nil {
		t.Error("not a note accepted")
	}
}
