package translog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Leaf kinds.
const (
	KindDecision   = "decision"
	KindDeadLetter = "dead_letter"
	// KindDispute is one step of a dispute after it was opened (forwarded,
	// confirmed, corrected, closed): Agency the disputing agency, Reason
	// the step, Request the dispute message's digest, Subject the disputed
	// receipt's digest, Receipt the digest of the broker's signed notice.
	KindDispute = "dispute"
	// KindStatusList is a new version of a revocation status list (logged
	// under "status_list:<list>:<revocations>"): Reason "revocation",
	// Subject the digest of its encodedList, Request the digest of the
	// dispute whose correction changed it.
	KindStatusList = "status_list"
	// KindBatchManifest is a periodic-exchange batch, logged under
	// "batch:<id>" before it is first published: Agency the recipient,
	// Agreement/AgreementID/AgreementVersion its agreement, Reason the
	// schedule's name, Receipt the digest of the signed manifest, Subject
	// the records' Merkle root, Time the period's end.
	KindBatchManifest = "batch_manifest"
	// KindSubjectLookup is an auditor's look-up of one person's decisions
	// in the console, logged before it is answered: Agency
	// "auditor:<user>", Reason the case reference (its digest when it
	// holds characters outside a token), Subject the keyed digest of the
	// person (never the ID number), Outcome "found:<n>".
	KindSubjectLookup = "subject_lookup"
)

// LeafVersion is the version of the leaf encoding this package writes.
const LeafVersion = 1

// MaxLeafSize bounds an encoded leaf (an entry bundle allows 65,535 bytes).
const MaxLeafSize = 4096

// TimeFormat is the one form of a leaf's time.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// Leaf is one entry of the log. Its encoding is specified in the package
// doc; the field order below is the encoding's member order.
type Leaf struct {
	Agency           string `json:"agency,omitempty"`
	Agreement        string `json:"agreement,omitempty"`
	AgreementID      string `json:"agreement_id,omitempty"`
	AgreementVersion int    `json:"agreement_version,omitempty"`
	Kind             string `json:"kind"`
	Outcome          string `json:"outcome,omitempty"`
	Query            string `json:"query,omitempty"`
	Reason           string `json:"reason,omitempty"`
	Receipt          string `json:"receipt,omitempty"`
	Request          string `json:"request,omitempty"`
	Subject          string `json:"subject,omitempty"`
	Time             string `json:"time"`
	Type             string `json:"type,omitempty"`
	V                int    `json:"v"`
}

// ErrLeaf is wrapped by every leaf encoding error.
var ErrLeaf = errors.New("translog: bad leaf")

// FormatTime is t in the leaf's time form (UTC, microseconds).
func FormatTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(TimeFormat) }

// Digest is "sha256:<hex>" of b, the form every digest of a leaf takes.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Marshal encodes l canonically, setting V to LeafVersion when it is zero.
func (l Leaf) Marshal() ([]byte, error) {
	if l.V == 0 {
		l.V = LeafVersion
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLeaf, err)
	}
	if len(b) > MaxLeafSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrLeaf, len(b), MaxLeafSize)
	}
	return b, nil
}

// ParseLeaf decodes a leaf and insists that b is its canonical encoding, so
// one leaf has exactly one byte form.
func ParseLeaf(b []byte) (Leaf, error) {
	if len(b) > MaxLeafSize {
		return Leaf{}, fmt.Errorf("%w: %d bytes, more than %d", ErrLeaf, len(b), MaxLeafSize)
	}
	var l Leaf
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Leaf{}, fmt.Errorf("%w: %v", ErrLeaf, err)
	}
	if l.V != LeafVersion {
		return Leaf{}, fmt.Errorf("%w: version %d, want %d", ErrLeaf, l.V, LeafVersion)
	}
	again, err := l.Marshal()
	if err != nil {
		return Leaf{}, err
	}
	if !bytes.Equal(again, b) {
		return Leaf{}, fmt.Errorf("%w: not in canonical form", ErrLeaf)
	}
	return l, nil
}

// TimeOf is the leaf's time.
func (l Leaf) TimeOf() (time.Time, error) {
	t, err := time.Parse(TimeFormat, l.Time)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q: %v", ErrLeaf, l.Time, err)
	}
	return t, nil
}

func (l Leaf) check() error {
	if l.Kind == "" {
		return fmt.Errorf("%w: no kind", ErrLeaf)
	}
	if _, err := l.TimeOf(); err != nil {
		return err
	}
	if l.AgreementVersion < 0 {
		return fmt.Errorf("%w: negative agreement version", ErrLeaf)
	}
	for _, f := range []struct{ name, v string }{
		{"agency", l.Agency}, {"agreement", l.Agreement}, {"agreement_id", l.AgreementID}, {"kind", l.Kind},
		{"outcome", l.Outcome}, {"query", l.Query}, {"reason", l.Reason}, {"receipt", l.Receipt},
		{"request", l.Request}, {"subject", l.Subject}, {"type", l.Type},
	} {
		if !token(f.v) {
			return fmt.Errorf("%w: %s %q has a character outside [A-Za-z0-9._:+/@-]", ErrLeaf, f.name, f.v)
		}
	}
	for _, d := range []struct{ name, v string }{{"agreement", l.Agreement}, {"receipt", l.Receipt}, {"request", l.Request}, {"subject", l.Subject}} {
		if d.v != "" && !isDigest(d.v) {
			return fmt.Errorf("%w: %s %q is not sha256:<64 lower-case hex>", ErrLeaf, d.name, d.v)
		}
	}
	return nil
}

// Token is s as a leaf carries it: s itself when every character is in
// [A-Za-z0-9._:+/@-], else the "sha256:<hex>" digest of its UTF-8 bytes (a
// sender's odd query type is logged, not refused).
func Token(s string) string {
	if token(s) {
		return s
	}
	return Digest([]byte(s))
}

func token(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '+', c == '/', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

func isDigest(s string) bool {
	const p = "sha256:"
	if len(s) != len(p)+64 || s[:len(p)] != p {
		return false
	}
	for i := len(p); i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
