package witness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
)

// algCosignatureV1 is the signed-note signature type of an Ed25519
// cosignature/v1 key (c2sp.org/tlog-cosignature).
const algCosignatureV1 = 0x04

// cosignatureSize is the length of a cosignature/v1 signature: a big-endian
// uint64 timestamp followed by an Ed25519 signature.
const cosignatureSize = 8 + ed25519.SignatureSize

// CosignatureVerifier is a note.Verifier for one witness's Ed25519
// cosignature/v1 key. Its Verify checks a timestamped signature over a
// checkpoint body.
type CosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

var _ note.Verifier = (*CosignatureVerifier)(nil)

// NewCosignatureVerifier parses a witness's verifier key in the signed-note
// vkey form "<name>+<key ID as 8 hex digits>+base64(0x04 || 32-byte Ed25519
// public key)", as litewitness prints it, checking the key ID.
func NewCosignatureVerifier(vkey string) (*CosignatureVerifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !validName(name) || len(hash16) != 8 {
		return nil, fmt.Errorf("witness: malformed verifier key %q", vkey)
	}
	hash, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil {
		return nil, fmt.Errorf("witness: malformed verifier key %q: key ID", vkey)
	}
	key, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("witness: malformed verifier key %q: key", vkey)
	}
	if key[0] != algCosignatureV1 {
		return nil, fmt.Errorf("witness: verifier key %q has signature type 0x%02x, want 0x%02x (Ed25519 cosignature/v1)", vkey, key[0], algCosignatureV1)
	}
	if len(key) != 1+ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness: verifier key %q: Ed25519 key of %d bytes", vkey, len(key)-1)
	}
	if uint32(hash) != keyID(name, key) {
		return nil, fmt.Errorf("witness: verifier key %q: key ID does not match name and key", vkey)
	}
	return &CosignatureVerifier{name: name, hash: uint32(hash), key: ed25519.PublicKey(key[1:])}, nil
}

// NewCosignatureVerifierFromKey returns the verifier of the witness named
// name with Ed25519 public key pub.
func NewCosignatureVerifierFromKey(name string, pub ed25519.PublicKey) (*CosignatureVerifier, error) {
	if !validName(name) {
		return nil, fmt.Errorf("witness: invalid key name %q", name)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("witness: not an Ed25519 public key")
	}
	k := append([]byte{algCosignatureV1}, pub...)
	return &CosignatureVerifier{name: name, hash: keyID(name, k), key: ed25519.PublicKey(k[1:])}, nil
}

// Name is the witness's key name.
func (v *CosignatureVerifier) Name() string { return v.name }

// KeyHash is the key ID, SHA-256(name || "\n" || 0x04 || key)[:4].
func (v *CosignatureVerifier) KeyHash() uint32 { return v.hash }

// PublicKey is the witness's Ed25519 public key.
func (v *CosignatureVerifier) PublicKey() ed25519.PublicKey { return v.key }

// String is the verifier key in signed-note vkey form.
func (v *CosignatureVerifier) String() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash,
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, v.key...)))
}

// Verify reports whether sig (timestamp || Ed25519 signature, without the
// key ID) is this witness's cosignature/v1 of the checkpoint body msg.
func (v *CosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != cosignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	m, err := cosignedMessage(t, msg)
	if err != nil {
		return false
	}
	return ed25519.Verify(v.key, m, sig[8:])
}

// cosignedMessage is the message a cosignature/v1 signs. The body must be a
// checkpoint, exactly as it parses.
func cosignedMessage(t uint64, body []byte) ([]byte, error) {
	c, err := torchwood.ParseCheckpoint(string(body))
	if err != nil {
		return nil, err
	}
	if c.String() != string(body) {
		return nil, errors.New("checkpoint body is not in canonical form")
	}
	return fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, body), nil
}

func keyID(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// validName is signed-note's rule for a key name: non-empty, valid UTF-8, no
// Unicode space and no plus.
func validName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// A Cosignature is one witness's verified cosignature of a checkpoint.
type Cosignature struct {
	// Signature is the note signature: the witness's key name, key ID and
	// base64(key ID || timestamp || Ed25519 signature).
	note.Signature
	// Time is when the witness signed, from the cosignature's timestamp.
	Time time.Time
}

// Line is the cosignature as a signed-note signature line, newline included.
func (c Cosignature) Line() string { return "— " + c.Name + " " + c.Base64 + "\n" }

// newCosignature reads the timestamp of a cosignature/v1 note signature.
func newCosignature(sig note.Signature) (Cosignature, error) {
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil || len(raw) != 4+cosignatureSize {
		return Cosignature{}, fmt.Errorf("witness: %s: not a cosignature/v1 signature", sig.Name)
	}
	t := binary.BigEndian.Uint64(raw[4:])
	if t > math.MaxInt64 {
		return Cosignature{}, fmt.Errorf("witness: %s: cosignature timestamp out of range", sig.Name)
	}
	return Cosignature{Signature: sig, Time: time.Unix(int64(t), 0).UTC()}, nil
}
