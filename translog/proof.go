package translog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ProofHeader is the first line of a C2SP tlog-proof.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// Proof is a C2SP tlog-proof: a leaf's index, its inclusion proof and the
// checkpoint it is proven against. Certless carries the leaf itself as the
// proof's extra data, so the record hash can be recomputed offline.
type Proof struct {
	Leaf       []byte
	Index      int64
	Hashes     tlog.RecordProof
	Checkpoint []byte // signed note, verbatim
}

// ErrProof is wrapped by every proof parsing and checking error.
var ErrProof = errors.New("translog: bad proof")

// Format encodes p as a C2SP tlog-proof.
func (p Proof) Format() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if len(p.Leaf) > 0 {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Leaf) + "\n")
	}
	b.WriteString("index " + strconv.FormatInt(p.Index, 10) + "\n")
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof decodes a C2SP tlog-proof.
func ParseProof(b []byte) (Proof, error) {
	if len(b) > MaxCheckpointSize+16<<10 {
		return Proof{}, fmt.Errorf("%w: %d bytes", ErrProof, len(b))
	}
	head, cp, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return Proof{}, fmt.Errorf("%w: no empty line before the checkpoint", ErrProof)
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != ProofHeader {
		return Proof{}, fmt.Errorf("%w: first line %q, want %q", ErrProof, lines[0], ProofHeader)
	}
	lines = lines[1:]
	var p Proof
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		leaf, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return Proof{}, fmt.Errorf("%w: extra data: %v", ErrProof, err)
		}
		p.Leaf, lines = leaf, lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return Proof{}, fmt.Errorf("%w: no index line", ErrProof)
	}
	s := strings.TrimPrefix(lines[0], "index ")
	idx, err := strconv.ParseInt(s, 10, 64)
	if err != nil || idx < 0 || strconv.FormatInt(idx, 10) != s {
		return Proof{}, fmt.Errorf("%w: index %q", ErrProof, s)
	}
	p.Index = idx
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return Proof{}, fmt.Errorf("%w: proof hash %q", ErrProof, l)
		}
		p.Hashes = append(p.Hashes, tlog.Hash(h))
	}
	if len(p.Hashes) > 64 {
		return Proof{}, fmt.Errorf("%w: %d proof hashes", ErrProof, len(p.Hashes))
	}
	p.Checkpoint = cp
	return p, nil
}

// Policy is what an offline verifier trusts: the log's origin and key, and
// the witnesses of which at least Quorum must have cosigned.
type Policy struct {
	Origin    string
	Log       note.Verifier
	Witnesses []note.Verifier
	Quorum    int
}

// VerifyCheckpoint checks signed against the policy: the log's signature and
// at least Quorum cosignatures of the named witnesses. It returns the
// checkpoint and the names of the witnesses that cosigned.
func (pol Policy) VerifyCheckpoint(signed []byte) (Checkpoint, []string, error) {
	c, err := OpenCheckpoint(signed, pol.Origin, pol.Log, pol.Witnesses...)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	var cosigned []string
	for _, s := range c.Note.Sigs {
		for _, w := range pol.Witnesses {
			if s.Name == w.Name() && s.Hash == w.KeyHash() {
				cosigned = append(cosigned, s.Name)
			}
		}
	}
	if len(cosigned) < pol.Quorum {
		var missing []string
		for _, w := range pol.Witnesses {
			if !contains(cosigned, w.Name()) {
				missing = append(missing, w.Name())
			}
		}
		return c, cosigned, fmt.Errorf("%w: %d of %d required cosignatures (missing %s)", ErrCheckpoint,
			len(cosigned), pol.Quorum, strings.Join(missing, ", "))
	}
	return c, cosigned, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// VerifyInclusion checks that p's leaf is at p.Index in the tree of the
// (already verified) checkpoint c.
func (p Proof) VerifyInclusion(c Checkpoint) error {
	if p.Index >= c.N {
		return fmt.Errorf("%w: index %d outside a tree of size %d", ErrProof, p.Index, c.N)
	}
	if err := tlog.CheckRecord(p.Hashes, c.N, c.Hash, p.Index, tlog.RecordHash(p.Leaf)); err != nil {
		return fmt.Errorf("%w: leaf %d is not in the tree of size %d: %v", ErrProof, p.Index, c.N, err)
	}
	return nil
}
