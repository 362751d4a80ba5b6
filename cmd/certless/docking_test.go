package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
)

// TestRealKafkaDockTakesEffectLive: beside two running broker instances on
// the real Kafka and PostgreSQL, `certless agency dock` a new county court
// whose key is nowhere but in the directory, with a co-signed agreement
// already in the policies folder (refused until the key arrives): its
// requests are answered within seconds, with no restart; a subject outside
// its county is denied outside_scope (its agreement sets no scope); a
// suspension makes both instances answer a signed denied/agency_suspended,
// and a resumption lifts it.
func TestRealKafkaDockTakesEffectLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	cfgPath := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	opts := serviceOptions{httpAddr: "127.0.0.1:0", directoryPoll: 200 * time.Millisecond}
	svcs := []*service{
		startLoggedService(ctx, t, cfg, opts, zap.NewNop()),
		startLoggedService(ctx, t, cfg, opts, zap.NewNop()),
	}

	id := "court-jian-" + testenv.Random(3)
	k, jwksFile := agencyKeyFile(t, id)
	if _, err := os.Stat(keys.JWKSPath(cfg.KeysDir, id)); err == nil {
		t.Fatal("the agency's key is in the keys folder; the test would not show the directory carries it")
	}

	// The agreement first: signed by a key no broker knows yet.
	now := time.Now()
	doc := fmt.Appendf(nil, "id: %s/identity\nversion: 1\ntitle: \"Ji'an court identity checks\"\nparties:\n  requester: %s\n  provider: %s\n"+
		"queries:\n  - query: identity\n    purposes: [case-handling]\n    fields: [as_of, id_name_match, status]\n"+
		"validity:\n  from: %q\n  until: %q\nstatus: active\n",
		id, id, policeOwner, now.Add(-time.Hour).UTC().Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339))
	owner, err := keys.SigningKey(cfg.KeysDir, policeOwner, now)
	if err != nil {
		t.Fatal(err)
	}
	var sigs []byte
	for _, signer := range []*keys.Private{k, owner} {
		if sigs, err = policies.Sign(doc, sigs, signer, now); err != nil {
			t.Fatal(err)
		}
	}
	agrPath := filepath.Join(cfg.PoliciesDir, id+"-identity.v1.yaml")
	if err := writeAtomic(agrPath+policies.SignaturesSuffix, sigs); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(agrPath, doc); err != nil {
		t.Fatal(err)
	}
	agreementID := id + "/identity"
	inForce := func(s *service) bool {
		for _, a := range s.agreements.Set().Agreements() {
			if a.Ref.ID == agreementID {
				return true
			}
		}
		return false
	}
	refused := false
	for _, p := range svcs[0].agreements.Reload().Problems {
		refused = refused || strings.Contains(p.File, id)
	}
	if !refused || inForce(svcs[0]) {
		t.Fatal("the agreement is not refused before its requester is docked; the test proves nothing")
	}

	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--config", cfgPath, "agency", "--actor", "ops-test"}, args...)...)
		if code != exitOK {
			t.Fatalf("agency %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	docked := time.Now()
	cli("dock", "--id", id, "--level", "county", "--region", "220582", "--name", "Ji'an People's Court", "--kind", "court", "--jwks", jwksFile)

	persons := records.Generate(devSeed, devPersons).Persons
	inCounty := pick(t, persons, func(p records.Person) bool { return strings.HasPrefix(p.IDNumber, "220582") })
	outside := pick(t, persons, func(p records.Person) bool { return strings.HasPrefix(p.IDNumber, "2224") })

	c, err := newAgencyClient(ctx, cfg, id, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(p records.Person) *client.Receipt {
		t.Helper()
		body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}})
		issued := time.Now().UTC().Truncate(time.Second)
		raw, err := envelope.Sign(k, envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: id,
			IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute),
			Purpose: envelope.Purpose{Basis: "case-handling", CaseRef: "(2026)吉0582刑初1号"}, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		got, err := c.Request(rctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
		if err != nil {
			t.Fatalf("no receipt for the docked agency's request: %v", err)
		}
		return got
	}

	got := ask(inCounty)
	t.Logf("docked agency's first request answered %v after the dock command started", time.Since(docked).Round(time.Millisecond))
	if got.Decision != schemas.DecisionAnswered || got.Agreement == nil || got.Agreement.ID != agreementID {
		t.Fatalf("request of the docked agency about a resident of its county: %s/%s %q (agreement %+v)", got.Decision, got.Reason, got.Detail, got.Agreement)
	}
	for i, s := range svcs {
		if _, ok := s.docking.Docked(id); !ok || !inForce(s) {
			t.Errorf("broker instance %d does not follow the dock: docked %v, agreement in force %v", i, ok, inForce(s))
		}
	}
	if got := ask(outside); got.Decision != schemas.DecisionDenied || got.Reason != "outside_scope" {
		t.Fatalf("request about a resident of another county: %s/%s, want denied/outside_scope", got.Decision, got.Reason)
	}

	cli("suspend", id, "--reason", "test: audit")
	for i, s := range svcs {
		waitFor(ctx, t, fmt.Sprintf("instance %d sees the suspension", i), 20*time.Second, func() bool { a, _ := s.docking.Docked(id); return a.Suspended })
	}
	if got := ask(inCounty); got.Decision != schemas.DecisionDenied || got.Reason != "agency_suspended" || got.Envelope.KeyID == "" {
		t.Fatalf("request of a suspended agency: %s/%s (signed by %q), want a signed denied/agency_suspended", got.Decision, got.Reason, got.Envelope.KeyID)
	}
	cli("resume", id)
	for i, s := range svcs {
		waitFor(ctx, t, fmt.Sprintf("instance %d sees the resumption", i), 20*time.Second, func() bool { a, _ := s.docking.Docked(id); return !a.Suspended })
	}
	if got := ask(inCounty); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("request after resume: %s/%s", got.Decision, got.Reason)
	}
}

func pick(t *testing.T, ps []records.Person, ok func(records.Person) bool) records.Person {
	t.Helper()
	for _, p := range ps {
		if ok(p) && p.CancelReason == "" {
			return p
		}
	}
	t.Fatal("no such person in the seeded records")
	return records.Person{}
}
