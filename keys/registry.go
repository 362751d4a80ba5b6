package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"
)

// Registry is the set of public keys the broker trusts, per agency. It is
// safe for concurrent use; Load and Reload replace the whole content
// atomically, so a reader sees either the old or the new set, never a mix.
type Registry struct {
	// loading serialises Load, Reload and WatchDir from reading the dir to
	// swapping the set, so that a set read earlier never replaces one read
	// later.
	loading sync.Mutex
	mu      sync.RWMutex
	byKID   map[string]Public
}

// NewRegistry returns a registry holding pubs. It fails on a duplicate kid.
func NewRegistry(pubs ...Public) (*Registry, error) {
	r := &Registry{byKID: map[string]Public{}}
	for _, p := range pubs {
		if _, dup := r.byKID[p.KID()]; dup {
			return nil, fmt.Errorf("keys: duplicate kid %q", p.KID())
		}
		if err := checkMaterial(p.Alg, p.Key); err != nil {
			return nil, err
		}
		r.byKID[p.KID()] = p
	}
	return r, nil
}

// LoadDir reads every <agency>.jwks.json of dir into a new registry. Every
// key of a file must belong to the agency the file is named after.
func LoadDir(dir string) (*Registry, error) {
	r := &Registry{byKID: map[string]Public{}}
	if err := r.Load(dir); err != nil {
		return nil, err
	}
	return r, nil
}

// Load replaces the content of r by the public sets found in dir (none when
// dir does not exist). On error r is unchanged. Unlike Reload it accepts any
// content, as at start.
func (r *Registry) Load(dir string) error {
	r.loading.Lock()
	defer r.loading.Unlock()
	s, err := readSnapshot(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	fresh, err := s.parse()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.byKID = fresh.byKID
	r.mu.Unlock()
	return nil
}

// Lookup returns the key called kid ("<agency>/<key-id>"), revoked or not.
func (r *Registry) Lookup(kid string) (Public, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byKID[kid]
	return p, ok
}

// Agency returns the keys of agency, sorted by kid.
func (r *Registry) Agency(agency string) []Public {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Public
	for _, p := range r.byKID {
		if p.Agency == agency {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KID() < out[j].KID() })
	return out
}

// Agencies returns the agencies that have at least one key, sorted.
func (r *Registry) Agencies() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, p := range r.byKID {
		if !seen[p.Agency] {
			seen[p.Agency] = true
			out = append(out, p.Agency)
		}
	}
	sort.Strings(out)
	return out
}

// ErrNoKey is returned when an agency has no usable key of the wanted use.
var ErrNoKey = errors.New("keys: no usable key")

// EncryptionKey returns the newest non-revoked ECDH-ES key of agency, for
// confidential receipts: the one whose key id sorts last, as in SigningKey.
func (r *Registry) EncryptionKey(agency string, now time.Time) (Public, error) {
	pubs := r.Agency(agency)
	newestFirst(pubs)
	for _, p := range pubs {
		if p.Alg == ECDHES && p.ValidAt(now) {
			return p, nil
		}
	}
	return Public{}, fmt.Errorf("%w: agency %q has no active encryption key", ErrNoKey, agency)
}

// JWKS returns the public JWK Set of agency (revoked keys included, with
// revoked_at) as JSON — what the broker serves at /.well-known/jwks.json for
// its own id and what `certless keys jwks --agency X` prints.
func (r *Registry) JWKS(agency string) ([]byte, error) {
	return MarshalJWKS(r.Agency(agency))
}
