package translog

import (
	"errors"
	"fmt"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxCheckpointSize bounds a signed checkpoint note with its cosignatures.
const MaxCheckpointSize = 64 << 10

// SignCheckpoint returns the C2SP checkpoint of tree for origin, signed
// with the log key as a C2SP signed note.
func SignCheckpoint(s note.Signer, origin string, tree tlog.Tree) ([]byte, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	body := torchwood.Checkpoint{Origin: origin, Tree: tree}.String()
	b, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		return nil, fmt.Errorf("translog: sign checkpoint: %w", err)
	}
	return b, nil
}

// Checkpoint is a verified checkpoint.
type Checkpoint struct {
	torchwood.Checkpoint
	// Note is the signed note, with the signatures that verified in
	// Note.Sigs and any others (unknown witnesses) in Note.UnverifiedSigs.
	Note *note.Note
}

// ErrCheckpoint is wrapped by every checkpoint verification error.
var ErrCheckpoint = errors.New("translog: bad checkpoint")

// OpenCheckpoint verifies signed with the log's verifier (and, when given,
// the witnesses' cosignature verifiers, whose signatures are then in
// Note.Sigs), checks that it is a checkpoint of origin, and parses it.
func OpenCheckpoint(signed []byte, origin string, log note.Verifier, witnesses ...note.Verifier) (Checkpoint, error) {
	if len(signed) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes", ErrCheckpoint, len(signed))
	}
	vs := append([]note.Verifier{log}, witnesses...)
	n, err := note.Open(signed, note.VerifierList(vs...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	logSigned := false
	for _, s := range n.Sigs {
		if s.Name == log.Name() && s.Hash == log.KeyHash() {
			logSigned = true
		}
	}
	if !logSigned {
		return Checkpoint{}, fmt.Errorf("%w: not signed by the log key %s", ErrCheckpoint, log.Name())
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrCheckpoint, c.Origin, origin)
	}
	return Checkpoint{Checkpoint: c, Note: n}, nil
}

// ParseCheckpointBody parses a checkpoint without verifying any signature
// (for reading what a store holds before checking it).
func ParseCheckpointBody(signed []byte) (torchwood.Checkpoint, error) {
	text, _, ok := strings.Cut(string(signed), "\n\n")
	if !ok {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: no signature block", ErrCheckpoint)
	}
	c, err := torchwood.ParseCheckpoint(text + "\n")
	if err != nil {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return c, nil
}

func checkOrigin(origin string) error {
	if origin == "" || strings.ContainsAny(origin, "\n+ ") {
		return fmt.Errorf("translog: origin %q must be a non-empty line without spaces or '+'", origin)
	}
	return nil
}

// NewLogKey generates an Ed25519 note key for origin: the signer key (keep
// it secret) and the verifier key (publish it).
func NewLogKey(origin string) (skey, vkey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return "", "", err
	}
	skey, vkey, err = note.GenerateKey(nil, origin)
	if err != nil {
		return "", "", fmt.Errorf("translog: generate log key: %w", err)
	}
	return skey, vkey, nil
}
