package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// TestRealKafkaThreeLevelRouting: a county source (Ji'an), its prefecture's
// (Tonghua) and the province's, each its own PostgreSQL database holding
// the residents registered there, behind a broker on the real Kafka. The
// subject's ID number decides the chain (its region code: county, then
// prefecture, then province); the first source that holds the subject
// answers. Every step is taken and counted per source: the county answers
// its resident; a Tonghua subject of a county without a source goes to the
// prefecture; a Ji'an-born subject registered elsewhere is not held by the
// county nor the prefecture and is answered by the province; a Yanbian
// subject has only the province. Suspending the county source in the
// directory re-routes its resident to the prefecture within seconds, and
// with the province suspended too, a subject no remaining source covers is
// answered with a signed not_found/no_jurisdiction.
func TestRealKafkaThreeLevelRouting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	for _, s := range []struct{ name, level, region string }{{"jian-records", "county", "220582"}, {"tonghua-records", "prefecture", "220500"}} {
		admin := testenv.PostgresDB(t)
		if err := sqlsource.SeedWhere(ctx, admin, devPersons, devSeed, heldBy(s.region), nil); err != nil {
			t.Fatalf("seed %s: %v", s.name, err)
		}
		role, password := "reader_"+testenv.Random(4), testenv.Random(8)
		if err := sqlsource.CreateReaderRole(ctx, admin, role, password); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(admin)
		u.User = url.UserPassword(role, password)
		cfg.Adapters = append(cfg.Adapters, config.Adapter{Name: s.name, Type: "sql", Level: s.level, Region: s.region, Options: map[string]any{"dsn": u.String()}})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := startLoggedService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0", directoryPoll: 100 * time.Millisecond}, zap.NewNop())

	ds := records.Generate(devSeed, devPersons)
	registered := map[string]string{}
	for _, h := range ds.Households {
		registered[h.ID] = h.RegionCode
	}
	find := func(what string, ok func(id, reg string) bool) records.Person {
		t.Helper()
		for _, p := range ds.Persons {
			if p.CancelReason == "" && ok(p.IDNumber, registered[p.HouseholdID]) {
				return p
			}
		}
		t.Fatalf("no subject in the seeded records: %s", what)
		return records.Person{}
	}
	jianResident := find("Ji'an ID, registered in Ji'an", func(id, reg string) bool { return id[:6] == "220582" && reg == "220582" })
	tonghuaResident := find("Tonghua ID of another county, registered in Tonghua", func(id, reg string) bool {
		return id[:4] == "2205" && id[:6] != "220582" && reg[:4] == "2205" && reg != "220582"
	})
	movedAway := find("Ji'an ID, registered outside Tonghua", func(id, reg string) bool { return id[:6] == "220582" && reg[:4] != "2205" })
	yanbian := find("Yanbian ID", func(id, reg string) bool { return id[:4] == "2224" })

	court, err := keys.SigningKey(cfg.KeysDir, "court-changchun", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newAgencyClient(ctx, cfg, "court-changchun", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka = svc.kafka
	defer c.Close()
	ask := func(p records.Person) *client.Receipt {
		t.Helper()
		body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}})
		issued := time.Now().UTC().Truncate(time.Second)
		raw, err := envelope.Sign(court, envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: "court-changchun",
			IssuedAt: issued, ExpiresAt: issued.Add(10 * time.Minute), Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "R-1"}, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Request(ctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// step asks about p and checks the decision and which sources were
	// asked with what outcome (source → "found" or "not_found").
	step := func(name string, p records.Person, decision, reason string, asked map[string]string) {
		t.Helper()
		before := sourceCalls(svc.registry)
		got := ask(p)
		if got.Decision != decision || got.Reason != reason {
			t.Fatalf("%s: %s/%s %q, want %s/%s", name, got.Decision, got.Reason, got.Detail, decision, reason)
		}
		after := sourceCalls(svc.registry)
		for _, src := range []string{"jilin-records", "tonghua-records", "jian-records"} {
			for _, outcome := range []string{"found", "not_found", "error", "unavailable"} {
				n := after[src][outcome] - before[src][outcome]
				want := 0.0
				if asked[src] == outcome {
					want = 1
				}
				if n != want {
					t.Errorf("%s: %s said %s %v times, want %v (asked: %v)", name, src, outcome, n, want, asked)
				}
			}
		}
	}

	step("county source holds its resident", jianResident, schemas.DecisionAnswered, "",
		map[string]string{"jian-records": "found"})
	step("no county source: the prefecture", tonghuaResident, schemas.DecisionAnswered, "",
		map[string]string{"tonghua-records": "found"})
	step("registered elsewhere: county, prefecture, then province", movedAway, schemas.DecisionAnswered, "",
		map[string]string{"jian-records": "not_found", "tonghua-records": "not_found", "jilin-records": "found"})
	step("no county or prefecture source: the province", yanbian, schemas.DecisionAnswered, "",
		map[string]string{"jilin-records": "found"})

	agency := func(args ...string) {
		t.Helper()
		path := cfg.DataDir + "/" + config.FileName
		if err := cfg.Write(path); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := runCLI(t, append([]string{"--config", path, "agency", "--actor", "ops-test"}, args...)...); code != exitOK {
			t.Fatalf("agency %s: %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	routed := func(region string) func() bool {
		return func() bool {
			for _, r := range svc.sources.router.Load().Regions() {
				if r == region {
					return true
				}
			}
			return false
		}
	}
	agency("suspend-source", "jian-records", "--reason", "maintenance window")
	waitFor(ctx, t, "the county source leaves routing", 20*time.Second, func() bool { return !routed("220582")() })
	step("county source suspended: its resident goes to the prefecture", jianResident, schemas.DecisionAnswered, "",
		map[string]string{"tonghua-records": "found"})

	agency("suspend-source", "jilin-records", "--reason", "test: no provincial fallback")
	waitFor(ctx, t, "the provincial source leaves routing", 20*time.Second, func() bool { return !routed("220000")() })
	step("no source covers the subject's region", yanbian, schemas.DecisionNotFound, "no_jurisdiction", nil)

	agency("resume-source", "jian-records")
	agency("resume-source", "jilin-records")
	waitFor(ctx, t, "both sources back in routing", 20*time.Second, func() bool { return routed("220582")() && routed("220000")() })
	step("resumed: the county answers again", jianResident, schemas.DecisionAnswered, "",
		map[string]string{"jian-records": "found"})
}
