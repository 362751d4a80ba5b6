package policies

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// caseFile is one file of testdata/authorise: agreements written to a
// policies folder, signed by both parties unless told otherwise, with
// lifecycle statements, then requests and the decisions they must get.
type caseFile struct {
	Agreements map[string]string `yaml:"agreements"`
	// Sign names who signs a file (default: both parties); [] leaves it
	// without a .jws.json.
	Sign       map[string][]string `yaml:"sign"`
	Statements map[string][]struct {
		By     string    `yaml:"by"`
		Status Status    `yaml:"status"`
		At     time.Time `yaml:"at"`
	} `yaml:"statements"`
	// Problems are the files Load must refuse, with their reasons.
	Problems map[string]Reason `yaml:"problems"`
	Cases    []struct {
		Name    string    `yaml:"name"`
		Now     time.Time `yaml:"now"`
		Request struct {
			Agency        string `yaml:"agency"`
			Query         string `yaml:"query"`
			Purpose       string `yaml:"purpose"`
			CaseRef       string `yaml:"case_ref"`
			SubjectRegion string `yaml:"subject_region"`
			AgencyRegion  string `yaml:"agency_region"`
		} `yaml:"request"`
		// Used is the usage before the request, per window; UsageError
		// makes Take fail.
		Used       map[string]int64 `yaml:"used"`
		UsageError bool             `yaml:"usage_error"`
		Want       struct {
			Allowed   bool     `yaml:"allowed"`
			Reason    string   `yaml:"reason"`
			Detail    string   `yaml:"detail"`
			Agreement string   `yaml:"agreement"` // "id@version", "" for none
			Fields    []string `yaml:"fields"`
			Taken     *bool    `yaml:"taken"` // whether a use was counted
			Error     bool     `yaml:"error"`
		} `yaml:"want"`
	} `yaml:"cases"`
}

// fakeUsage is a Usage with fixed counts.
type fakeUsage struct {
	used  map[string]int64
	fail  bool
	taken int
}

func (u *fakeUsage) Take(_ context.Context, _ string, _ Ref, q Quotas, _ time.Time) (bool, error) {
	if u.fail {
		return false, errors.New("store down")
	}
	for w, limit := range map[string]int64{"per_minute": q.PerMinute, "per_day": q.PerDay, "per_month": q.PerMonth} {
		if limit > 0 && u.used[w] >= limit {
			return false, nil
		}
	}
	u.taken++
	return true, nil
}

func TestAuthoriseTable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "authorise", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var cf caseFile
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(&cf); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			w := defaultWorld(t)
			dir := w.folder(cf)
			set, problems := Load(dir, w.reg)
			got := map[string]Reason{}
			for _, p := range problems {
				got[filepath.Base(strings.TrimSuffix(strings.TrimSuffix(p.File, SignaturesSuffix), StatusSuffix))] = p.Reason
			}
			if len(got) != len(cf.Problems) {
				t.Errorf("problems %v, want %v", problems, cf.Problems)
			}
			for f, r := range cf.Problems {
				if got[f] != r {
					t.Errorf("problem of %s = %q, want %q (all: %v)", f, got[f], r, problems)
				}
			}
			for _, c := range cf.Cases {
				t.Run(c.Name, func(t *testing.T) {
					u := &fakeUsage{used: c.Used, fail: c.UsageError}
					r := c.Request
					d, err := set.Authorise(context.Background(), Request{Agency: r.Agency, Query: r.Query, Purpose: r.Purpose, CaseRef: r.CaseRef, SubjectRegion: r.SubjectRegion, AgencyRegion: r.AgencyRegion}, c.Now, u)
					if c.Want.Error {
						if err == nil {
							t.Fatalf("want an error, got %+v", d)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					ref := ""
					if d.Agreement != nil {
						ref = d.Agreement.ID + "@" + itoa(d.Agreement.Version)
					}
					if d.Allowed != c.Want.Allowed || d.Reason != c.Want.Reason || ref != c.Want.Agreement {
						t.Fatalf("got allowed=%v reason=%q detail=%q agreement=%q, want allowed=%v reason=%q agreement=%q", d.Allowed, d.Reason, d.Detail, ref, c.Want.Allowed, c.Want.Reason, c.Want.Agreement)
					}
					if c.Want.Detail != "" && d.Detail != c.Want.Detail {
						t.Fatalf("detail %q, want %q", d.Detail, c.Want.Detail)
					}
					if c.Want.Fields != nil && !slices.Equal(d.Fields, c.Want.Fields) {
						t.Fatalf("fields %v, want %v", d.Fields, c.Want.Fields)
					}
					if d.Allowed && len(d.Fields) == 0 {
						t.Fatal("allowed without fields")
					}
					if d.Agreement != nil && !strings.HasPrefix(d.Agreement.Digest, "sha256:") {
						t.Fatalf("digest %q", d.Agreement.Digest)
					}
					if c.Want.Taken != nil && (u.taken == 1) != *c.Want.Taken {
						t.Fatalf("taken %d, want %v", u.taken, *c.Want.Taken)
					}
				})
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// folder writes the agreements of cf into a fresh policies folder, signed
// at signedAt, with their statements.
func (w *world) folder(cf caseFile) string {
	w.t.Helper()
	dir := w.t.TempDir()
	for name, doc := range cf.Agreements {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			w.t.Fatal(err)
		}
		signers, ok := cf.Sign[name]
		if !ok {
			a, err := Parse([]byte(doc))
			if err != nil {
				w.t.Fatalf("%s: %v", name, err)
			}
			signers = []string{a.Parties.Requester, a.Parties.Provider}
		}
		if len(signers) > 0 {
			sigs := w.cosign([]byte(doc), signedAt, signers...)
			if err := os.WriteFile(filepath.Join(dir, name+SignaturesSuffix), sigs, 0o644); err != nil {
				w.t.Fatal(err)
			}
		}
		var status []byte
		for _, st := range cf.Statements[name] {
			a, err := Parse([]byte(doc))
			if err != nil {
				w.t.Fatal(err)
			}
			line, err := signStatementAnyone([]byte(doc), a, st.Status, w.keys[st.By], st.At)
			if err != nil {
				w.t.Fatal(err)
			}
			status = append(status, line...)
		}
		if status != nil {
			if err := os.WriteFile(filepath.Join(dir, name+StatusSuffix), status, 0o644); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	return dir
}

// signedAt is when the test agreements are signed.
var signedAt = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

func TestCaseRefPresent(t *testing.T) {
	for ref, want := range map[string]bool{
		"(2026)吉01刑初123号": true, "ADM-2026-0042": true, "00042": true,
		"none": false, "N/A": false, "-": false, "   ": false, "暂无": false, "没有": false, "不适用": false,
		"ＮＯＮＥ": false, "Ｎ／Ａ": false, "0": false, "00": false, "0000": false,
	} {
		if got := CaseRefPresent(ref); got != want {
			t.Errorf("CaseRefPresent(%q) = %v, want %v", ref, got, want)
		}
	}
}
