package broker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
)

// staticSet is an AgreementSet that never changes.
type staticSet struct{ s *policies.Set }

func (s staticSet) Set() *policies.Set { return s.s }

// countingUsage allows every Take and counts them.
type countingUsage struct{ n atomic.Int64 }

func (u *countingUsage) Take(context.Context, string, policies.Ref, policies.Quotas, time.Time) (bool, error) {
	u.n.Add(1)
	return true, nil
}

// quotaSet is a loaded set with one co-signed agreement of court-changchun
// for identity, with a daily quota.
func quotaSet(t *testing.T, now time.Time) *policies.Set {
	t.Helper()
	dir := t.TempDir()
	kdir := filepath.Join(dir, "keys")
	var signers []*keys.Private
	for _, party := range []string{"court-changchun", "police-jilin"} {
		k, err := keys.GenerateInDir(kdir, party, "", keys.EdDSA)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, k)
	}
	doc := []byte(fmt.Sprintf(`id: court-changchun/identity
version: 1
title: identity checks
parties:
  requester: court-changchun
  provider: police-jilin
queries:
  - query: identity
    purposes: [litigation]
    fields: [as_of, id_name_match]
quotas:
  per_day: 100
validity:
  from: %q
  until: %q
status: active
`, now.Add(-time.Hour).UTC().Format(time.RFC3339), now.Add(time.Hour).UTC().Format(time.RFC3339)))
	var sigs []byte
	for _, k := range signers {
		var err error
		if sigs, err = policies.Sign(doc, sigs, k, now); err != nil {
			t.Fatal(err)
		}
	}
	pdir := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(pdir, "identity.v1.yaml")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+policies.SignaturesSuffix, sigs, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := keys.LoadDir(kdir)
	if err != nil {
		t.Fatal(err)
	}
	set, problems := policies.Load(pdir, reg)
	if len(problems) > 0 || set.Len() != 1 {
		t.Fatalf("load: %v", problems)
	}
	return set
}

// TestAgreementsCountARetriedRequestOnce: a retry of the same request (its
// digest) reuses the first authorisation, so a transient failure after the
// quota was taken does not spend the quota again; another request does.
func TestAgreementsCountARetriedRequestOnce(t *testing.T) {
	now := time.Now()
	usage := &countingUsage{}
	a := &broker.Agreements{Agreements: staticSet{quotaSet(t, now)}, Usage: usage}
	req := broker.AuthRequest{Agency: "court-changchun", Query: "identity", Purpose: "litigation", CaseRef: "(2026)1",
		SubjectRegion: "220102", Digest: "sha256:" + fmt.Sprintf("%064x", 1)}
	for attempt := range 3 {
		got, err := a.Authorise(context.Background(), req, now.Add(time.Duration(attempt)*time.Second))
		if err != nil || !got.Allowed || got.Basis.ID != "court-changchun/identity" || got.Basis.Version != 1 {
			t.Fatalf("attempt %d: %+v %v", attempt, got, err)
		}
	}
	if n := usage.n.Load(); n != 1 {
		t.Fatalf("the quota was taken %d times for one request", n)
	}
	req.Digest = "sha256:" + fmt.Sprintf("%064x", 2)
	if _, err := a.Authorise(context.Background(), req, now); err != nil || usage.n.Load() != 2 {
		t.Fatalf("another request: %v, takes %d", err, usage.n.Load())
	}
}
