package translog_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

// memLog is a translog.Source in memory.
type memLog struct {
	leaves [][]byte
	hashes memory
	cp     []byte
}

func (m *memLog) LatestCheckpoint(context.Context) ([]byte, error) { return m.cp, nil }
func (m *memLog) ReadHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	return m.hashes.ReadHashes(idx)
}
func (m *memLog) ReadLeaves(_ context.Context, start int64, n int) ([][]byte, error) {
	end := min(start+int64(n), int64(len(m.leaves)))
	return m.leaves[start:end], nil
}

func newMemLog(t *testing.T, n int) (*memLog, note.Verifier) {
	t.Helper()
	skey, vkey, _ := translog.NewLogKey("certless.test/tiles")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	m := &memLog{hashes: memory{}}
	tree, _ := translog.NewTree(0, nil)
	for i := 0; i < n; i++ {
		l := sampleLeaf()
		l.Request = translog.Digest([]byte{byte(i), byte(i >> 8)})
		b, _ := l.Marshal()
		m.leaves = append(m.leaves, b)
		tree.Append(b)
	}
	for _, h := range tree.Drain() {
		m.hashes[h.Index] = h.Hash
	}
	root, _ := tree.Root()
	m.cp, _ = translog.SignCheckpoint(s, "certless.test/tiles", root)
	return m, v
}

func TestHandlerServesTiles(t *testing.T) {
	m, v := newMemLog(t, 600) // two full tiles and a partial one of 88
	srv := httptest.NewServer(http.StripPrefix("/log", translog.Handler(m)))
	defer srv.Close()
	for _, c := range []struct {
		path, ctype, cache string
		code, size         int
	}{
		{"/log/checkpoint", "text/plain; charset=utf-8", "no-cache", 200, len(m.cp)},
		{"/log/tile/0/000", "application/octet-stream", "public, max-age=31536000, immutable", 200, 256 * 32},
		{"/log/tile/0/002.p/88", "application/octet-stream", "public, max-age=10", 200, 88 * 32},
		{"/log/tile/1/000.p/2", "application/octet-stream", "public, max-age=10", 200, 2 * 32},
		{"/log/tile/0/002", "", "", 404, -1},      // not full yet
		{"/log/tile/0/002.p/89", "", "", 404, -1}, // beyond the tree
		{"/log/tile/entries/001", "application/octet-stream", "public, max-age=31536000, immutable", 200, -1},
		{"/log/tile/entries/003.p/1", "", "", 404, -1},
		{"/log/tile/0/x", "", "", 400, -1},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", c.path, ct, c.ctype)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != c.cache {
			t.Errorf("%s: Cache-Control %q, want %q", c.path, cc, c.cache)
		}
		if c.size >= 0 && len(b) != c.size {
			t.Errorf("%s: %d bytes, want %d", c.path, len(b), c.size)
		}
	}
	// torchwood's client reads and checks every entry and one proof.
	f, _ := torchwood.NewTileFetcher(srv.URL + "/log")
	cl, _ := torchwood.NewClient(f)
	cp, err := translog.OpenCheckpoint(m.cp, "certless.test/tiles", v)
	if err != nil {
		t.Fatal(err)
	}
	// It leaves the trailing partial tile for a second call from there.
	n := 0
	for pass := 0; pass < 2 && n < 600; pass++ {
		for i, e := range cl.Entries(context.Background(), cp.Tree, int64(n)) {
			if string(e) != string(m.leaves[i]) {
				t.Fatalf("entry %d differs", i)
			}
			n++
		}
	}
	if cl.Err() != nil || n != 600 {
		t.Fatalf("read %d entries: %v", n, cl.Err())
	}
	if e, _, err := cl.Entry(context.Background(), cp.Tree, 513); err != nil || string(e) != string(m.leaves[513]) {
		t.Fatalf("entry 513: %v", err)
	}
}
