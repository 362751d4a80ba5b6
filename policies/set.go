package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certless/certless/envelope"
)

// Problem is a file Load refused, with the stable reason; the agreement it
// belongs to is not in the Set (unless Kept).
type Problem struct {
	// File is the path of the offending file (the document, its .jws.json
	// or its .status.jws), or of the folder.
	File   string
	Reason Reason
	Err    error
	// Kept is true when Reload kept the last good version of this
	// agreement from the previous set.
	Kept bool
}

func (p Problem) String() string {
	s := p.File + ": " + string(p.Reason)
	if p.Err != nil {
		s += ": " + p.Err.Error()
	}
	if p.Kept {
		s += " (last good version kept)"
	}
	return s
}

// Ref names one agreement version as decisions and receipts cite it.
type Ref struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	// Digest is Digest of the document's exact bytes.
	Digest string `json:"digest"`
}

// Info is one loaded agreement version. Its pointers are shared with the
// Set and must not be modified.
type Info struct {
	// File is the document's base name in the folder.
	File      string
	Agreement *Agreement
	Ref       Ref
	// Signers are the verified signatures: both parties, except for a
	// proposal, which may have fewer.
	Signers []Signer
	// Statements are the verified lifecycle statements, in the order they
	// apply.
	Statements []Statement
	sum        string // of the document, signatures and statements
}

// StatusAt returns the agreement's lifecycle status at now (its document
// status with the statements made by now applied; validity not included)
// and the parties whose suspension is in force.
func (i Info) StatusAt(now time.Time) (Status, []string) {
	st, by, err := fold(i.Agreement, i.Statements, now)
	if err != nil { // checked at load; unreachable
		return StatusSuspended, nil
	}
	return st, by
}

// Set is an immutable, verified set of agreements, safe for concurrent use.
type Set struct {
	entries     []*Info            // by id, then version
	byRequester map[string][]*Info // by id, then version
	digest      string
}

// Agreements returns every agreement version of the set, by id then
// version.
func (s *Set) Agreements() []Info {
	out := make([]Info, len(s.entries))
	for i, e := range s.entries {
		out[i] = *e
	}
	return out
}

// Digest is "sha256:<hex>" over the files of every agreement in the set
// (names, documents, signatures, statements): equal digests, equal sets.
func (s *Set) Digest() string { return s.digest }

// Len is the number of agreement versions in the set.
func (s *Set) Len() int { return len(s.entries) }

// Empty is a set without agreements: every request is no_agreement.
func Empty() *Set { return newSet(nil) }

func newSet(entries []*Info) *Set {
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i].Ref, entries[j].Ref
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Version < b.Version
	})
	s := &Set{entries: entries, byRequester: map[string][]*Info{}}
	h := sha256.New()
	for _, e := range entries {
		r := e.Agreement.Parties.Requester
		s.byRequester[r] = append(s.byRequester[r], e)
		fmt.Fprintf(h, "%s %s\n", e.File, e.sum)
	}
	s.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return s
}

// Load reads every agreement of dir (<name>.yaml, <name>.yml or
// <name>.json, with <name>.yaml.jws.json and the optional
// <name>.yaml.status.jws beside it), verifies it with resolver and returns
// the set of those that passed; every refused file is a Problem. A folder
// that cannot be read yields an empty set and one Problem.
func Load(dir string, resolver envelope.KeyResolver) (*Set, []Problem) {
	s, problems, err := Reload(nil, dir, resolver)
	if err != nil {
		return Empty(), []Problem{{File: dir, Reason: ReasonUnreadable, Err: err}}
	}
	return s, problems
}

// Reload is Load with memory: an agreement file that prev held and that is
// refused now (tampered, unsigned, its key gone...) keeps prev's version,
// and its Problem says Kept; an agreement whose files were removed is
// gone. err != nil means dir could not be read as a whole (missing, more
// than MaxFiles agreements): keep prev.
func Reload(prev *Set, dir string, resolver envelope.KeyResolver) (*Set, []Problem, error) {
	return reload(prev, dir, resolver, nil)
}

// LoadFor is Load that also refuses (wrong_party) an agreement whose
// provider is not one of providers — the police data owners whose records
// the broker answers from — or whose requester is one: two agencies
// co-signing must not grant each other the police's records.
func LoadFor(dir string, resolver envelope.KeyResolver, providers []string) (*Set, []Problem) {
	s, problems, err := reload(nil, dir, resolver, providers)
	if err != nil {
		return Empty(), []Problem{{File: dir, Reason: ReasonUnreadable, Err: err}}
	}
	return s, problems
}

func reload(prev *Set, dir string, resolver envelope.KeyResolver, providers []string) (*Set, []Problem, error) {
	snap, err := readSnapshot(dir)
	if err != nil {
		return nil, nil, err
	}
	snap.providers = providers
	s, problems := snap.build(prev, resolver)
	return s, problems, nil
}

// snapshot is the agreement files of a folder as read at one moment.
type snapshot struct {
	// providers, when set, are the only parties that may be providers.
	providers []string
	dir       string
	files     map[string][]byte // by base name
	bad       []Problem         // files that could not be read
	sum       string            // of every name and content
}

func isDocument(name string) bool {
	if strings.HasSuffix(name, SignaturesSuffix) || strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

func isCompanion(name string) bool {
	return strings.HasSuffix(name, SignaturesSuffix) || strings.HasSuffix(name, StatusSuffix)
}

func readSnapshot(dir string) (*snapshot, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policies: read %s: %w", dir, err)
	}
	s := &snapshot{dir: dir, files: map[string][]byte{}}
	docs := 0
	for _, e := range ents {
		if isDocument(e.Name()) {
			docs++
		}
	}
	if docs > MaxFiles {
		return nil, fmt.Errorf("policies: %s holds %d agreement files, limit %d", dir, docs, MaxFiles)
	}
	h := sha256.New()
	for _, e := range ents { // sorted by name
		name := e.Name()
		if !isDocument(name) && !isCompanion(name) {
			continue
		}
		limit := int64(MaxDocumentBytes)
		switch {
		case strings.HasSuffix(name, SignaturesSuffix):
			limit = MaxSignaturesBytes
		case strings.HasSuffix(name, StatusSuffix):
			limit = MaxStatusBytes
		}
		b, err := readFile(filepath.Join(dir, name), limit)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while reading
		}
		if err != nil {
			s.bad = append(s.bad, Problem{File: filepath.Join(dir, name), Reason: ReasonUnreadable, Err: err})
			fmt.Fprintf(h, "%s unreadable %v\n", name, err)
			continue
		}
		s.files[name] = b
		fmt.Fprintf(h, "%s %s\n", name, Digest(b))
	}
	s.sum = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// readFile reads a regular file (following symbolic links) of at most limit
// bytes.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// build verifies every agreement of s.
func (s *snapshot) build(prev *Set, resolver envelope.KeyResolver) (*Set, []Problem) {
	problems := append([]Problem(nil), s.bad...)
	var names []string
	for name := range s.files {
		if isDocument(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	// Companions without a document are reported, not used.
	for name := range s.files {
		if isCompanion(name) {
			doc := strings.TrimSuffix(strings.TrimSuffix(name, SignaturesSuffix), StatusSuffix)
			if _, ok := s.files[doc]; !ok || !isDocument(doc) {
				problems = append(problems, Problem{File: filepath.Join(s.dir, name), Reason: ReasonUnreadable, Err: fmt.Errorf("no agreement document %s beside it", doc)})
			}
		}
	}
	previous := map[string]*Info{}
	if prev != nil {
		for _, e := range prev.entries {
			previous[e.File] = e
		}
	}
	var entries []*Info
	kept := map[*Info]bool{}
	for _, name := range names {
		e, p := s.verify(name, resolver)
		if p == nil && s.providers != nil {
			pa := e.Agreement.Parties
			switch {
			case !slices.Contains(s.providers, pa.Provider):
				p = &Problem{File: filepath.Join(s.dir, name), Reason: ReasonWrongParty,
					Err: fmt.Errorf("provider %s is not a police data owner (%s)", pa.Provider, strings.Join(s.providers, ", "))}
			case slices.Contains(s.providers, pa.Requester):
				p = &Problem{File: filepath.Join(s.dir, name), Reason: ReasonWrongParty,
					Err: fmt.Errorf("requester %s is a police data owner", pa.Requester)}
			}
		}
		if old, ok := previous[name]; p == nil && ok && old.Ref.Digest == e.Ref.Digest {
			// A statement once verified cannot be unsaid: a status file
			// that lost one (deleted, truncated) would resume or revive
			// the agreement with nobody's signature.
			if lost, ok := lostStatement(old.Statements, e.Statements); ok {
				p = &Problem{File: filepath.Join(s.dir, name+StatusSuffix), Reason: ReasonStatementInvalid,
					Err: fmt.Errorf("the %s statement of %s at %s is gone from the file", lost.Status, lost.By, lost.At.Format(time.RFC3339))}
			}
		}
		if p != nil {
			// A file that went bad keeps its last good version; a key that
			// is no longer trusted (revoked, removed) withdraws it.
			if old, ok := previous[name]; ok && p.Reason != ReasonKeyRevoked && p.Reason != ReasonUnknownKey {
				p.Kept = true
				entries = append(entries, old)
				kept[old] = true
			}
			problems = append(problems, *p)
			continue
		}
		entries = append(entries, e)
	}
	// One id and version in two files: refuse both (a kept one yields).
	byRef := map[[2]any][]*Info{}
	for _, e := range entries {
		k := [2]any{e.Ref.ID, e.Ref.Version}
		byRef[k] = append(byRef[k], e)
	}
	var out []*Info
	for _, e := range entries {
		dups := byRef[[2]any{e.Ref.ID, e.Ref.Version}]
		if len(dups) == 1 {
			out = append(out, e)
			continue
		}
		fresh := 0
		for _, d := range dups {
			if !kept[d] {
				fresh++
			}
		}
		if kept[e] && fresh == 1 {
			continue // the fresh file replaces the kept one silently
		}
		if !kept[e] && fresh == 1 {
			out = append(out, e)
			continue
		}
		if !kept[e] {
			problems = append(problems, Problem{File: filepath.Join(s.dir, e.File), Reason: ReasonDuplicate, Err: fmt.Errorf("%s version %d is in %d files", e.Ref.ID, e.Ref.Version, len(dups))})
		}
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].File < problems[j].File })
	return newSet(out), problems
}

// lostStatement returns a statement of old that is not in fresh.
func lostStatement(old, fresh []Statement) (Statement, bool) {
	for _, o := range old {
		found := false
		for _, f := range fresh {
			if f.Status == o.Status && f.At.Equal(o.At) && f.By == o.By && f.Digest == o.Digest {
				found = true
				break
			}
		}
		if !found {
			return o, true
		}
	}
	return Statement{}, false
}

// verify checks one agreement and its companions.
func (s *snapshot) verify(name string, resolver envelope.KeyResolver) (*Info, *Problem) {
	path := filepath.Join(s.dir, name)
	doc := s.files[name]
	fail := func(file string, err error) *Problem {
		var e *Error
		if errors.As(err, &e) {
			return &Problem{File: file, Reason: e.Reason, Err: err}
		}
		return &Problem{File: file, Reason: ReasonInvalidAgreement, Err: err}
	}
	a, err := Parse(doc)
	if err != nil {
		return nil, fail(path, err)
	}
	sigs, hasSigs := s.files[name+SignaturesSuffix]
	proposal := a.Status == StatusProposed
	if !hasSigs && !proposal {
		return nil, &Problem{File: path, Reason: ReasonUnsigned, Err: fmt.Errorf("no %s beside it", name+SignaturesSuffix)}
	}
	signers, err := verifySigners(doc, sigs, resolver, a, !proposal)
	if err != nil {
		return nil, fail(path+SignaturesSuffix, err)
	}
	status, hasStatus := s.files[name+StatusSuffix]
	var stmts []Statement
	if hasStatus {
		if stmts, err = ParseStatements(status, doc, a, resolver); err != nil {
			return nil, fail(path+StatusSuffix, err)
		}
	}
	return &Info{
		File:       name,
		Agreement:  a,
		Ref:        Ref{ID: a.ID, Version: a.Version, Digest: Digest(doc)},
		Signers:    signers,
		Statements: stmts,
		sum:        Digest(doc) + " " + Digest(sigs) + " " + Digest(status),
	}, nil
}
