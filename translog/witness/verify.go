package witness

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/fault"
)

// Verified is a checkpoint whose log signature and witness quorum verified.
type Verified struct {
	Origin string
	Tree   tlog.Tree
	// Text is the checkpoint body the signatures cover.
	Text string
	// Cosignatures holds one verified cosignature per witness that cosigned,
	// in the order of the witnesses given to Verify.
	Cosignatures []Cosignature
}

// Witnesses are the names of the witnesses whose cosignature verified.
func (v *Verified) Witnesses() []string {
	names := make([]string, len(v.Cosignatures))
	for i, c := range v.Cosignatures {
		names[i] = c.Name
	}
	return names
}

// MissingCosignaturesError is a checkpoint with fewer than K of the
// required witnesses' cosignatures.
type MissingCosignaturesError struct {
	Origin   string
	Size     int64
	K        int
	Verified []string // witnesses whose cosignature verified
	Missing  []string // witnesses with no cosignature line
	Invalid  []string // witnesses whose cosignature lines did not verify
}

func (e *MissingCosignaturesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint %s size %d: %d of the %d required witness cosignatures", e.Origin, e.Size, len(e.Verified), e.K)
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "; missing: %s", strings.Join(e.Missing, ", "))
	}
	if len(e.Invalid) > 0 {
		fmt.Fprintf(&b, "; invalid: %s", strings.Join(e.Invalid, ", "))
	}
	return b.String()
}

// Verify opens signedNote, a checkpoint signed by the log and cosigned by
// witnesses, and checks that log's signature verifies and that at least k
// of witnesses (distinct names; normally *CosignatureVerifier) have a
// cosignature that verifies over the same checkpoint body. Signatures of
// other keys are ignored; an invalid cosignature only fails to count.
//
// A failure is permanent: checkpoint_malformed, checkpoint_unverified (the
// log signature), or cosignatures_insufficient wrapping a
// *MissingCosignaturesError that names the witnesses missing.
func Verify(signedNote []byte, log note.Verifier, witnesses []note.Verifier, k int) (*Verified, error) {
	if k < 0 || k > len(witnesses) {
		return nil, fmt.Errorf("witness: %d of %d witnesses cannot be required", k, len(witnesses))
	}
	seen := make(map[string]bool, len(witnesses))
	for _, w := range witnesses {
		if seen[w.Name()] {
			return nil, fmt.Errorf("witness: %s is listed twice", w.Name())
		}
		if w.Name() == log.Name() && w.KeyHash() == log.KeyHash() {
			return nil, fmt.Errorf("witness: %s is the log's own key", w.Name())
		}
		seen[w.Name()] = true
	}

	n, err := note.Open(signedNote, note.VerifierList(log))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, fault.Permanentf("checkpoint_unverified", "checkpoint: no valid signature by log key %s+%08x: %w", log.Name(), log.KeyHash(), err)
		}
		return nil, fault.Permanentf("checkpoint_malformed", "checkpoint: %w", err)
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || c.String() != n.Text {
		return nil, fault.Permanentf("checkpoint_malformed", "checkpoint: note text is not a canonical checkpoint")
	}

	out := &Verified{Origin: c.Origin, Tree: c.Tree, Text: n.Text}
	miss := &MissingCosignaturesError{Origin: c.Origin, Size: c.N, K: k}
	for _, w := range witnesses {
		cs, found := bestCosignature(n, w)
		switch {
		case cs != nil:
			out.Cosignatures = append(out.Cosignatures, *cs)
			miss.Verified = append(miss.Verified, w.Name())
		case found:
			miss.Invalid = append(miss.Invalid, w.Name())
		default:
			miss.Missing = append(miss.Missing, w.Name())
		}
	}
	if len(out.Cosignatures) < k {
		return nil, fault.Permanent("cosignatures_insufficient", miss)
	}
	return out, nil
}

// bestCosignature returns w's latest cosignature of n that verifies, and
// whether n has any signature line with w's name and key ID.
func bestCosignature(n *note.Note, w note.Verifier) (best *Cosignature, found bool) {
	for _, s := range n.UnverifiedSigs {
		if s.Name != w.Name() || s.Hash != w.KeyHash() {
			continue
		}
		found = true
		raw, err := base64.StdEncoding.DecodeString(s.Base64)
		if err != nil || len(raw) < 4 || !w.Verify([]byte(n.Text), raw[4:]) {
			continue
		}
		c, err := newCosignature(s)
		if err != nil {
			continue
		}
		if best == nil || c.Time.After(best.Time) {
			best = &c
		}
	}
	return best, found
}

// AppendCosignatures returns signedNote with the signature lines of cosigs
// added after its own. A cosignature by a key (name and key ID) that already
// signed the note replaces that signature; of several by one key the last
// given wins. The cosignatures must be over this note's text (as
// AddCheckpoint returns them); AppendCosignatures checks only the note's
// form, Verify checks the result.
func AppendCosignatures(signedNote []byte, cosigs ...Cosignature) ([]byte, error) {
	n, err := splitNote(signedNote)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	type key struct {
		name string
		hash uint32
	}
	latest := make(map[key]int, len(cosigs))
	for i, c := range cosigs {
		raw, err := base64.StdEncoding.DecodeString(c.Base64)
		if err != nil || !validName(c.Name) || len(raw) < 5 || binary.BigEndian.Uint32(raw) != c.Hash {
			return nil, fmt.Errorf("witness: cosignature %d (%s) is malformed", i, c.Name)
		}
		latest[key{c.Name, c.Hash}] = i
	}
	var b strings.Builder
	b.WriteString(n.Text)
	b.WriteString("\n")
	count := 0
	for _, s := range n.UnverifiedSigs {
		if _, replaced := latest[key{s.Name, s.Hash}]; replaced {
			continue
		}
		b.WriteString("— " + s.Name + " " + s.Base64 + "\n")
		count++
	}
	idx := make([]int, 0, len(latest))
	for _, i := range latest {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		b.WriteString(cosigs[i].Line())
		count++
	}
	if count > 100 {
		return nil, fmt.Errorf("witness: %d signatures, more than a note may carry (100)", count)
	}
	return []byte(b.String()), nil
}
