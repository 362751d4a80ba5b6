package witness_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog/witness"
)

// memTree is an in-memory RFC 6962 tree: every stored hash, in
// golang.org/x/mod/sumdb/tlog's storage order.
type memTree struct {
	hashes []tlog.Hash
	n      int64
}

func (t *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// newTree returns a tree of n leaves "<prefix> <i>".
func newTree(t testing.TB, prefix string, n int64) *memTree {
	t.Helper()
	tr := &memTree{}
	tr.grow(t, prefix, n)
	return tr
}

// grow appends leaves "<prefix> <i>" until the tree has n.
func (tr *memTree) grow(t testing.TB, prefix string, n int64) {
	t.Helper()
	for ; tr.n < n; tr.n++ {
		hs, err := tlog.StoredHashes(tr.n, fmt.Appendf(nil, "%s %d", prefix, tr.n), tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.hashes = append(tr.hashes, hs...)
	}
}

func (tr *memTree) root(t testing.TB, n int64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, tr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (tr *memTree) proof(t testing.TB, oldSize, n int64) tlog.TreeProof {
	t.Helper()
	if oldSize == 0 || oldSize == n {
		return nil
	}
	p, err := tlog.ProveTree(n, oldSize, tr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkpoint is the tree's size-n checkpoint signed by the log.
func (tr *memTree) checkpoint(t testing.TB, log note.Signer, n int64) []byte {
	t.Helper()
	text := torchwood.Checkpoint{Origin: log.Name(), Tree: tlog.Tree{N: n, Hash: tr.root(t, n)}}.String()
	signed, err := note.Sign(&note.Note{Text: text}, log)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// newLog returns a log key for origin.
func newLog(t testing.TB, origin string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

// newCosigner returns a torchwood cosignature/v1 signer named name.
func newCosigner(t testing.TB, name string) *torchwood.CosignatureSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeWitness is an in-process c2sp.org/tlog-witness that cosigns with
// torchwood's CosignatureSigner, following the specification's checks.
type fakeWitness struct {
	signer *torchwood.CosignatureSigner
	srv    *httptest.Server

	mu          sync.Mutex
	logs        map[string]*fakeLog
	lastBody    []byte
	contentType string
	// tamper, when set, rewrites a 200 answer before it is sent.
	tamper func([]byte) []byte
	// override, when set, answers every request instead.
	override http.HandlerFunc
}

type fakeLog struct {
	v    note.Verifier
	size int64
	hash tlog.Hash
}

func newFakeWitness(t testing.TB, name string) *fakeWitness {
	t.Helper()
	fw := &fakeWitness{signer: newCosigner(t, name), logs: map[string]*fakeLog{}}
	fw.srv = httptest.NewServer(http.HandlerFunc(fw.serve))
	t.Cleanup(fw.srv.Close)
	return fw
}

func (fw *fakeWitness) vkey() string { return fw.signer.Verifier().String() }

func (fw *fakeWitness) client(t testing.TB) *witness.Witness {
	t.Helper()
	w, err := witness.New(fw.vkey(), fw.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (fw *fakeWitness) addLog(v note.Verifier) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.logs[v.Name()] = &fakeLog{v: v}
}

func (fw *fakeWitness) serve(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.lastBody, fw.contentType = body, r.Header.Get("Content-Type")
	if fw.override != nil {
		fw.override(rw, r)
		return
	}
	head, signed, ok := bytes.Cut(body, []byte("\n\n"))
	lines := strings.Split(string(head), "\n")
	old, ok2 := strings.CutPrefix(lines[0], "old ")
	oldSize, err := strconv.ParseInt(old, 10, 64)
	if !ok || !ok2 || err != nil || oldSize < 0 || strconv.FormatInt(oldSize, 10) != old {
		http.Error(rw, "malformed old size", http.StatusBadRequest)
		return
	}
	var proof tlog.TreeProof
	for _, l := range lines[1:] {
		h, err := tlog.ParseHash(l)
		if err != nil {
			http.Error(rw, "malformed proof", http.StatusBadRequest)
			return
		}
		proof = append(proof, h)
	}
	origin, _, _ := strings.Cut(string(signed), "\n")
	l := fw.logs[origin]
	if l == nil {
		http.Error(rw, "unknown log", http.StatusNotFound)
		return
	}
	n, err := note.Open(signed, note.VerifierList(l.v))
	if err != nil {
		http.Error(rw, "invalid signature", http.StatusForbidden)
		return
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || c.Origin != origin || oldSize > c.N || (oldSize == 0 && len(proof) > 0) {
		http.Error(rw, "bad request", http.StatusBadRequest)
		return
	}
	if oldSize != l.size || (oldSize == c.N && c.Hash != l.hash) {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", l.size)
		return
	}
	if oldSize > 0 {
		if err := tlog.CheckTree(proof, c.N, c.Hash, oldSize, l.hash); err != nil {
			http.Error(rw, "bad consistency proof", http.StatusUnprocessableEntity)
			return
		}
	}
	l.size, l.hash = c.N, c.Hash
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, fw.signer)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	answer := cosigned[len(n.Text)+1:]
	if fw.tamper != nil {
		answer = fw.tamper(answer)
	}
	rw.Write(answer)
}
