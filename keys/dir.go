package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const (
	jwksSuffix = ".jwks.json"
	keySuffix  = ".key.json"
)

// JWKSPath is where the public set of agency lives in dir.
func JWKSPath(dir, agency string) string { return filepath.Join(dir, agency+jwksSuffix) }

// PrivatePath is where the private key agency/keyID lives in dir.
func PrivatePath(dir, agency, keyID string) string {
	return filepath.Join(dir, agency+"."+keyID+keySuffix)
}

// GenerateInDir is `certless keys generate`: it generates a key (see
// Generate for the defaults), writes the private JWK to
// PrivatePath(dir, agency, keyID) with mode 0600 and adds the public key to
// the agency's JWKS in dir, creating dir (0700) and the set as needed. It
// never overwrites an existing key.
func GenerateInDir(dir, agency, keyID string, alg Alg) (*Private, error) {
	k, err := Generate(agency, keyID, alg)
	if err != nil {
		return nil, err
	}
	if _, err := WritePrivate(dir, k); err != nil {
		return nil, err
	}
	if err := AddPublic(dir, k.Public); err != nil {
		_ = os.Remove(PrivatePath(dir, k.Agency, k.KeyID))
		return nil, err
	}
	return k, nil
}

// WritePrivate writes k as a private JWK with mode 0600 and returns its
// path. It fails if the file exists.
func WritePrivate(dir string, k *Private) (string, error) {
	b, err := MarshalPrivate(k)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	path := PrivatePath(dir, k.Agency, k.KeyID)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("keys: write private key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("keys: write private key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("keys: write private key: %w", err)
	}
	return path, nil
}

// ErrKeyFilePerm is returned for a private key file readable by group or
// others.
var ErrKeyFilePerm = errors.New("keys: private key file must not be readable by group or others (chmod 600)")

// ReadSecret reads a file holding a secret (a private key, the log's note
// key, the subject-key secret), refusing one whose permissions let group
// or others read it.
func ReadSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrKeyFilePerm, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return b, nil
}

// ReadPrivate reads a private JWK file, refusing one whose permissions let
// group or others read it.
func ReadPrivate(path string) (*Private, error) {
	b, err := ReadSecret(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPrivate reads the private key agency/keyID from dir and takes its
// revocation time from the agency's JWKS in dir, which must list it.
func LoadPrivate(dir, agency, keyID string) (*Private, error) {
	k, err := ReadPrivate(PrivatePath(dir, agency, keyID))
	if err != nil {
		return nil, err
	}
	if k.Agency != agency || k.KeyID != keyID {
		return nil, fmt.Errorf("keys: %s holds key %q", PrivatePath(dir, agency, keyID), k.KID())
	}
	pubs, err := readJWKS(JWKSPath(dir, agency))
	if err != nil {
		return nil, err
	}
	for _, p := range pubs {
		if p.KID() == k.KID() {
			k.RevokedAt = p.RevokedAt
			return k, nil
		}
	}
	return nil, fmt.Errorf("keys: %s is not published in %s", k.KID(), JWKSPath(dir, agency))
}

// SigningKey returns the current signing key of agency in dir: of the
// non-revoked EdDSA/ES256 keys in the agency's JWKS whose private file is
// present, the one whose key id sorts last. Generated ids start with their
// UTC creation time ("k20261201T081544Z-3fa9c2"), so that is the newest, and
// the older date-only ids ("k20261118-3fa9c2") sort before the time-stamped
// ids of their own and later days. The broker signs receipts with it.
func SigningKey(dir, agency string, now time.Time) (*Private, error) {
	pubs, err := readJWKS(JWKSPath(dir, agency))
	if err != nil {
		return nil, err
	}
	newestFirst(pubs)
	for _, p := range pubs {
		if p.Use() != UseSig || !p.ValidAt(now) {
			continue
		}
		if _, err := os.Stat(PrivatePath(dir, agency, p.KeyID)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return LoadPrivate(dir, agency, p.KeyID)
	}
	return nil, fmt.Errorf("%w: no active signing key of %q with a private key in %s", ErrNoKey, agency, dir)
}

// AddPublic adds p to the JWKS of its agency in dir, creating the file as
// needed. It fails if the kid is already there.
func AddPublic(dir string, p Public) error {
	pubs, err := readJWKS(JWKSPath(dir, p.Agency))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, q := range pubs {
		if q.KID() == p.KID() {
			return fmt.Errorf("keys: %s already in %s", p.KID(), JWKSPath(dir, p.Agency))
		}
	}
	return writeJWKS(dir, p.Agency, append(pubs, p))
}

// Revoke marks kid revoked at `at` in its agency's JWKS in dir. Everything
// issued before `at` stays verifiable; revoking again keeps the earlier time.
func Revoke(dir, kid string, at time.Time) error {
	agency, _, ok := SplitKID(kid)
	if !ok {
		return fmt.Errorf("%w: kid %q", ErrBadName, kid)
	}
	pubs, err := readJWKS(JWKSPath(dir, agency))
	if err != nil {
		return err
	}
	for i := range pubs {
		if pubs[i].KID() != kid {
			continue
		}
		if pubs[i].RevokedAt.IsZero() || at.Before(pubs[i].RevokedAt) {
			pubs[i].RevokedAt = at.UTC()
		}
		return writeJWKS(dir, agency, pubs)
	}
	return fmt.Errorf("keys: %s not found in %s", kid, JWKSPath(dir, agency))
}

// ReadJWKS is `certless keys jwks --agency X`: the agency's public set from
// dir, normalised (sorted, indented), ready to publish.
func ReadJWKS(dir, agency string) ([]byte, error) {
	if err := CheckAgency(agency); err != nil {
		return nil, err
	}
	pubs, err := readJWKS(JWKSPath(dir, agency))
	if err != nil {
		return nil, err
	}
	return MarshalJWKS(pubs)
}

func readJWKS(path string) ([]Public, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	pubs, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pubs, nil
}

func writeJWKS(dir, agency string, pubs []Public) error {
	b, err := MarshalJWKS(pubs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+agency+"-*.tmp")
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), JWKSPath(dir, agency)); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}
