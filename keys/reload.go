package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ChangeKind is what happened to a key between two loads.
type ChangeKind string

// The kinds of change.
const (
	KeyAdded   ChangeKind = "added"   // a new kid, possibly already revoked
	KeyRevoked ChangeKind = "revoked" // a kid got or moved its revoked_at
	KeyRemoved ChangeKind = "removed" // a kid is no longer in any set
)

// Change is one key that changed; it carries no key material.
type Change struct {
	Kind   ChangeKind
	KID    string
	Agency string
	Alg    Alg
	// RevokedAt is the key's revocation time after the change; zero when it
	// is not revoked.
	RevokedAt time.Time
}

// String describes c for a log line, e.g.
// "revoked court-a/k1 (EdDSA) at 2026-12-01T08:00:00Z".
func (c Change) String() string {
	s := fmt.Sprintf("%s %s (%s)", c.Kind, c.KID, c.Alg)
	if !c.RevokedAt.IsZero() {
		s += " at " + c.RevokedAt.UTC().Format(time.RFC3339Nano)
	}
	return s
}

// ErrKeyConflict is returned when a kid already known would name different
// key material or algorithm, or when a revoked key would lose its
// revocation. A kid names one key for life, so that what it signed stays
// verifiable, and a revocation is never undone behind the broker's back:
// give a new key a new key id.
var ErrKeyConflict = errors.New("keys: conflicting key")

// DefaultWatchInterval is how often WatchDir polls when given no interval.
const DefaultWatchInterval = 2 * time.Second

// Reload re-reads dir like Load and returns what changed (sorted by KID); on
// error r is unchanged. Besides Load's errors it refuses, with
// ErrKeyConflict, a kid whose material or algorithm changed and a revoked key
// that is no longer revoked, and it refuses a dir that does not exist (a
// lost volume must not drop every key of a running broker; an empty dir
// does).
func (r *Registry) Reload(dir string) ([]Change, error) {
	r.loading.Lock()
	defer r.loading.Unlock()
	s, err := readSnapshot(dir)
	if err != nil {
		return nil, err
	}
	return r.apply(s)
}

// WatchDir polls dir every interval (default 2s when <= 0) and reloads r when
// a *.jwks.json file was added, removed or rewritten (compare name, size,
// mtime and a content hash), calling report with the changes or the error
// (report is never called with nil changes and nil error). It returns when
// ctx ends. Safe to run beside Lookup and Reload.
//
// It polls once at start, so changes made since r was loaded are reported
// too. report runs on WatchDir's goroutine. A failed reload keeps the keys r
// had and is reported once; the next change to the files is tried again. An
// error reading dir is reported once until it changes or clears.
func (r *Registry) WatchDir(ctx context.Context, dir string, interval time.Duration, report func([]Change, error)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	var (
		seen    map[string]fileState // the files last reloaded from; nil before the first
		readErr string               // the last error reading dir, reported once
	)
	poll := func() ([]Change, error) {
		r.loading.Lock()
		defer r.loading.Unlock()
		s, err := readSnapshot(dir)
		if err != nil {
			if err.Error() == readErr {
				return nil, nil
			}
			readErr = err.Error()
			return nil, err
		}
		readErr = ""
		if seen != nil && maps.Equal(seen, s.files) {
			return nil, nil
		}
		seen = s.files
		return r.apply(s)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if changes, err := poll(); err != nil || len(changes) > 0 {
			report(changes, err) // outside the lock: report may call Reload
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apply replaces the content of r by the keys of s and returns what changed.
// The caller holds r.loading.
func (r *Registry) apply(s snapshot) ([]Change, error) {
	fresh, err := s.parse()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changes, err := diff(r.byKID, fresh.byKID)
	if err != nil {
		return nil, err
	}
	r.byKID = fresh.byKID
	return changes, nil
}

// diff returns the changes from old to fresh, sorted by KID.
func diff(old, fresh map[string]Public) ([]Change, error) {
	var out []Change
	for kid, n := range fresh {
		o, ok := old[kid]
		switch {
		case !ok:
			out = append(out, change(KeyAdded, n))
		case !sameKey(o, n):
			return nil, fmt.Errorf("%w: %s now has different key material or algorithm", ErrKeyConflict, kid)
		case o.Revoked() && !n.Revoked():
			return nil, fmt.Errorf("%w: %s was revoked at %s and no longer is", ErrKeyConflict, kid, o.RevokedAt.Format(time.RFC3339Nano))
		case o.Revoked() && n.RevokedAt.After(o.RevokedAt):
			// A later time would let the key vouch again for what it was
			// refused for in between; Revoke itself only moves it earlier.
			return nil, fmt.Errorf("%w: %s was revoked at %s, the file now says the later %s", ErrKeyConflict, kid,
				o.RevokedAt.Format(time.RFC3339Nano), n.RevokedAt.Format(time.RFC3339Nano))
		case !o.RevokedAt.Equal(n.RevokedAt):
			out = append(out, change(KeyRevoked, n))
		}
	}
	for kid, o := range old {
		if _, ok := fresh[kid]; !ok {
			out = append(out, change(KeyRemoved, o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KID < out[j].KID })
	return out, nil
}

func change(kind ChangeKind, p Public) Change {
	return Change{Kind: kind, KID: p.KID(), Agency: p.Agency, Alg: p.Alg, RevokedAt: p.RevokedAt}
}

// sameKey reports whether a and b are the same key: same kid, algorithm and
// material (revocation aside).
func sameKey(a, b Public) bool {
	if a.KID() != b.KID() || a.Alg != b.Alg {
		return false
	}
	k, ok := a.Key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b.Key)
}

// snapshot is the *.jwks.json files of a dir as read at one moment.
type snapshot struct {
	dir   string
	names []string             // sorted
	files map[string]fileState // by name
	data  map[string][]byte    // by name
}

// fileState is what WatchDir compares to notice a rewritten file.
type fileState struct {
	size  int64
	mtime int64 // UnixNano
	sum   [sha256.Size]byte
}

// readSnapshot reads every regular *.jwks.json file of dir (following
// symbolic links, as in a mounted Kubernetes secret). A file removed while
// dir is read is left out; a missing dir is an error wrapping
// fs.ErrNotExist.
func readSnapshot(dir string) (snapshot, error) {
	s := snapshot{dir: dir, files: map[string]fileState{}, data: map[string][]byte{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return s, fmt.Errorf("keys: load %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, jwksSuffix) {
			continue
		}
		b, st, err := readFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("keys: load %s: %w", filepath.Join(dir, name), err)
		}
		s.names = append(s.names, name)
		s.files[name], s.data[name] = st, b
	}
	return s, nil
}

func readFile(path string) ([]byte, fileState, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileState{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileState{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fileState{}, fmt.Errorf("not a regular file")
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, f); err != nil {
		return nil, fileState{}, err
	}
	return buf.Bytes(), fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano(), sum: sha256.Sum256(buf.Bytes())}, nil
}

// parse builds a registry of the keys in s. Every key of a file must belong
// to the agency the file is named after.
func (s snapshot) parse() (*Registry, error) {
	var all []Public
	for _, name := range s.names {
		path := filepath.Join(s.dir, name)
		agency := strings.TrimSuffix(name, jwksSuffix)
		if err := CheckAgency(agency); err != nil {
			return nil, fmt.Errorf("keys: load %s: %w", path, err)
		}
		pubs, err := ParseJWKS(s.data[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, p := range pubs {
			if p.Agency != agency {
				return nil, fmt.Errorf("keys: load %s: key %q belongs to another agency", path, p.KID())
			}
		}
		all = append(all, pubs...)
	}
	return NewRegistry(all...)
}
