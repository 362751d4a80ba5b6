package keys

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestReloadChanges(t *testing.T) {
	dir := t.TempDir()
	k1, _ := GenerateInDir(dir, "court-a", "k1", EdDSA)
	k2, _ := GenerateInDir(dir, "court-a", "k2", ES256)
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := reg.Reload(dir); err != nil || len(ch) != 0 {
		t.Fatalf("reload of an unchanged dir = %v, %v", ch, err)
	}

	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if err := Revoke(dir, k1.KID(), at); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateInDir(dir, "notary-b", "n1", ECDHES); err != nil {
		t.Fatal(err)
	}
	ch, err := reg.Reload(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Kind: KeyRevoked, KID: "court-a/k1", Agency: "court-a", Alg: EdDSA, RevokedAt: at},
		{Kind: KeyAdded, KID: "notary-b/n1", Agency: "notary-b", Alg: ECDHES},
	}
	if !slices.Equal(ch, want) {
		t.Fatalf("changes\n got %v\nwant %v", ch, want)
	}
	if p, _ := reg.Lookup(k1.KID()); !p.RevokedAt.Equal(at) {
		t.Fatalf("registry not updated: %v", p.RevokedAt)
	}

	// Moving revoked_at (here earlier) is a revocation again.
	if err := Revoke(dir, k1.KID(), at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	ch, err = reg.Reload(dir)
	if err != nil || len(ch) != 1 || ch[0].Kind != KeyRevoked || !ch[0].RevokedAt.Equal(at.Add(-time.Hour)) {
		t.Fatalf("moved revoked_at: %v, %v", ch, err)
	}

	// Removing a set removes its keys.
	if err := os.Remove(JWKSPath(dir, "notary-b")); err != nil {
		t.Fatal(err)
	}
	ch, err = reg.Reload(dir)
	if err != nil || !slices.Equal(ch, []Change{{Kind: KeyRemoved, KID: "notary-b/n1", Agency: "notary-b", Alg: ECDHES}}) {
		t.Fatalf("removed: %v, %v", ch, err)
	}
	if _, ok := reg.Lookup("notary-b/n1"); ok {
		t.Fatal("removed key still there")
	}
	if _, ok := reg.Lookup(k2.KID()); !ok {
		t.Fatal("unchanged key lost")
	}
}

// TestReloadRefusals: a failing reload leaves the registry as it was and the
// next good state is picked up.
func TestReloadRefusals(t *testing.T) {
	dir := t.TempDir()
	k1, _ := GenerateInDir(dir, "court-a", "k1", EdDSA)
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if err := Revoke(dir, k1.KID(), at); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(JWKSPath(dir, "court-a"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Generate("court-a", "k1", EdDSA)
	unrevoked := k1.Public
	unrevoked.RevokedAt = time.Time{}
	later := k1.Public
	later.RevokedAt = at.Add(time.Hour)
	foreign, _ := Generate("court-b", "k9", EdDSA)
	for name, c := range map[string]struct {
		content  func() []byte
		conflict bool
	}{
		"half-written":      {content: func() []byte { return good[:len(good)/2] }},
		"private key":       {content: func() []byte { b, _ := MarshalPrivate(k1); return []byte(`{"keys":[` + string(b) + `]}`) }},
		"foreign key":       {content: func() []byte { b, _ := MarshalJWKS([]Public{foreign.Public}); return b }},
		"material replaced": {content: func() []byte { b, _ := MarshalJWKS([]Public{other.Public}); return b }, conflict: true},
		"unrevoked":         {content: func() []byte { b, _ := MarshalJWKS([]Public{unrevoked}); return b }, conflict: true},
		"revoked later":     {content: func() []byte { b, _ := MarshalJWKS([]Public{later}); return b }, conflict: true},
	} {
		if err := os.WriteFile(JWKSPath(dir, "court-a"), c.content(), 0o644); err != nil {
			t.Fatal(err)
		}
		ch, err := reg.Reload(dir)
		if err == nil || ch != nil {
			t.Errorf("%s: reload = %v, %v; want an error", name, ch, err)
		}
		if errors.Is(err, ErrKeyConflict) != c.conflict {
			t.Errorf("%s: %v; ErrKeyConflict %v", name, err, c.conflict)
		}
		if p, ok := reg.Lookup(k1.KID()); !ok || !sameKey(p, k1.Public) || !p.RevokedAt.Equal(at) {
			t.Errorf("%s: registry changed by a failed reload: %+v", name, p)
		}
	}
	if err := os.WriteFile(JWKSPath(dir, "court-a"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if ch, err := reg.Reload(dir); err != nil || len(ch) != 0 {
		t.Fatalf("good state again: %v, %v", ch, err)
	}
	if _, err := reg.Reload(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reload of a missing dir = %v", err)
	}
	if _, ok := reg.Lookup(k1.KID()); !ok {
		t.Fatal("a missing dir dropped the keys")
	}
}

func TestSnapshotSeesRewriteWithSameSizeAndMtime(t *testing.T) {
	dir := t.TempDir()
	a, _ := Generate("court-a", "k1", EdDSA)
	b, _ := Generate("court-a", "k1", EdDSA)
	ja, _ := MarshalJWKS([]Public{a.Public})
	jb, _ := MarshalJWKS([]Public{b.Public})
	if len(ja) != len(jb) {
		t.Fatalf("test needs same-size sets: %d %d", len(ja), len(jb))
	}
	path := JWKSPath(dir, "court-a")
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(b []byte) map[string]fileState {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		s, err := readSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s.files
	}
	first, again, second := write(ja), write(ja), write(jb)
	if !maps.Equal(first, again) {
		t.Fatal("same content seen as a change")
	}
	if maps.Equal(first, second) {
		t.Fatal("rewrite with the same size and mtime not seen")
	}
}

// writeAtomic replaces path by b in one rename, as writeJWKS does, so that a
// poll never sees a file being written.
func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// watcher runs WatchDir on dir and hands out what it reports.
type watcher struct {
	reports chan report
	done    chan struct{}
	stop    context.CancelFunc
}

type report struct {
	changes []Change
	err     error
}

func watch(t *testing.T, reg *Registry, dir string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{reports: make(chan report, 16), done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(w.done)
		reg.WatchDir(ctx, dir, time.Millisecond, func(ch []Change, err error) {
			if ch == nil && err == nil {
				t.Error("report called with nil changes and nil error")
			}
			w.reports <- report{ch, err}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			t.Error("WatchDir did not return after its context ended")
		}
	})
	return w
}

func (w *watcher) next(t *testing.T) report {
	t.Helper()
	select {
	case r := <-w.reports:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no report from WatchDir")
		return report{}
	}
}

func TestWatchDir(t *testing.T) {
	dir := t.TempDir()
	k1, _ := GenerateInDir(dir, "court-a", "k1", EdDSA)
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Made between the load and the watch: reported by the first poll.
	if _, err := GenerateInDir(dir, "court-a", "k2", EdDSA); err != nil {
		t.Fatal(err)
	}
	w := watch(t, reg, dir)
	if r := w.next(t); r.err != nil || len(r.changes) != 1 || r.changes[0].Kind != KeyAdded || r.changes[0].KID != "court-a/k2" {
		t.Fatalf("first poll: %v", r)
	}

	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if err := Revoke(dir, k1.KID(), at); err != nil {
		t.Fatal(err)
	}
	if r := w.next(t); r.err != nil || !slices.Equal(r.changes, []Change{{Kind: KeyRevoked, KID: "court-a/k1", Agency: "court-a", Alg: EdDSA, RevokedAt: at}}) {
		t.Fatalf("revocation: %v", r)
	}

	// A half-written, then a tampered file: each reported once, and the old
	// keys stay.
	good, _ := os.ReadFile(JWKSPath(dir, "court-a"))
	for _, bad := range [][]byte{
		good[:len(good)/2],
		[]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"court-a/k3","alg":"HS256"}]}`),
	} {
		writeAtomic(t, JWKSPath(dir, "court-a"), bad)
		if r := w.next(t); r.err == nil || r.changes != nil {
			t.Fatalf("bad file: %v", r)
		}
		if p, ok := reg.Lookup(k1.KID()); !ok || !p.RevokedAt.Equal(at) {
			t.Fatal("bad file changed the registry")
		}
	}

	// The next good state is picked up.
	writeAtomic(t, JWKSPath(dir, "court-a"), good)
	if _, err := GenerateInDir(dir, "notary-b", "n1", EdDSA); err != nil {
		t.Fatal(err)
	}
	var got []Change
	for len(got) == 0 || got[len(got)-1].KID != "notary-b/n1" { // one or two polls
		r := w.next(t)
		if r.err != nil {
			t.Fatal(r.err)
		}
		got = append(got, r.changes...)
	}
	if len(got) != 1 || got[0].Kind != KeyAdded {
		t.Fatalf("after repair: %v", got)
	}
	select {
	case r := <-w.reports:
		t.Fatalf("unexpected report %v", r)
	default:
	}
}

// TestWatchDirBesideReaders runs WatchDir, Reload and Lookup together while
// keys come and go, for the race detector.
func TestWatchDirBesideReaders(t *testing.T) {
	dir := t.TempDir()
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, reg, dir)
	go func() { // drain
		for range w.reports {
		}
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				reg.Lookup("court-a/k1")
				reg.Agency("court-a")
				if _, err := reg.Reload(dir); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for _, id := range []string{"k1", "k2", "k3", "k4", "k5"} {
		if _, err := GenerateInDir(dir, "court-a", id, EdDSA); err != nil {
			t.Fatal(err)
		}
		if err := Revoke(dir, "court-a/"+id, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if ch, err := reg.Reload(dir); err != nil || len(reg.Agency("court-a")) != 5 {
		t.Fatalf("final reload %v, %v: %d keys", ch, err, len(reg.Agency("court-a")))
	}
}
