package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/broker/store/storetest"
	"github.com/certless/certless/internal/testenv"
)

func opener(dsn string) storetest.Opener {
	return func(opts store.Options) (store.Store, error) {
		return store.Open(context.Background(), dsn, opts)
	}
}

func TestSQLiteFile(t *testing.T) {
	storetest.Run(t, storetest.Harness{Fresh: func(t *testing.T) storetest.Opener {
		return opener(filepath.Join(t.TempDir(), "decisions.db"))
	}})
}

func TestSQLiteFileURI(t *testing.T) {
	storetest.Run(t, storetest.Harness{Fresh: func(t *testing.T) storetest.Opener {
		return opener("file:" + filepath.Join(t.TempDir(), "decisions.db") + "?cache=private")
	}})
}

func TestSQLiteMemory(t *testing.T) {
	storetest.Run(t, storetest.Harness{Volatile: true, Fresh: func(t *testing.T) storetest.Opener {
		return opener(":memory:")
	}})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, storetest.Harness{Fresh: func(t *testing.T) storetest.Opener {
		return opener(testenv.PostgresDB(t))
	}})
}

// TestPostgresBrokerRole proves that a broker needs no more than
// PostgresRoleSQL grants, and that those grants cannot rewrite history.
func TestPostgresBrokerRole(t *testing.T) {
	ctx := context.Background()
	adminDSN := testenv.PostgresDB(t)

	admin, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := "certless_broker_" + testenv.Random(4) // roles are cluster-wide
	password := testenv.Random(12)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password)); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, adminDSN)
		if err != nil {
			t.Logf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	})
	u, err := url.Parse(adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	brokerDSN := u.String()

	// Before Migrate the broker cannot create the schema, and says so.
	if _, err := store.Open(ctx, brokerDSN, store.Options{}); err == nil {
		t.Fatal("the broker role created the schema")
	} else {
		t.Logf("open as broker before migrate: %v", err)
	}

	if err := store.Migrate(ctx, adminDSN); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := admin.Exec(ctx, store.PostgresRoleSQL(role)); err != nil {
		t.Fatalf("grant: %v", err)
	}

	s, err := store.Open(ctx, brokerDSN, store.Options{})
	if err != nil {
		t.Fatalf("open as broker: %v", err)
	}
	defer s.Close()
	d := storetest.Decision("court-220102", "req-1", "a")
	if _, err := s.Save(ctx, d); err != nil {
		t.Fatalf("save as broker: %v", err)
	}
	redelivered := d
	redelivered.Receipt = []byte("other")
	if got, err := s.Save(ctx, redelivered); err != nil || string(got.Receipt) != string(d.Receipt) {
		t.Fatalf("redelivered save as broker: %q %v", got.Receipt, err)
	}
	if _, err := s.Save(ctx, storetest.Decision("court-220102", "req-1", "b")); !errors.Is(err, store.ErrIDConflict) {
		t.Fatalf("conflicting save as broker: %v, want ErrIDConflict", err)
	}
	if _, ok, err := s.Get(ctx, d.Digest); !ok || err != nil {
		t.Fatalf("get as broker: %v %v", ok, err)
	}
	if _, ok, err := s.DigestByRequestID(ctx, d.Agency, d.RequestID); !ok || err != nil {
		t.Fatalf("digest by id as broker: %v %v", ok, err)
	}
	if n, err := s.Count(ctx); n != 1 || err != nil {
		t.Fatalf("count as broker: %d %v", n, err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, store.Beijing)
	quota := storetest.Budget{Agency: "court-220102", AgreementID: "court-criminal-record", Version: 1}
	limits := store.Limits{PerMinute: 2, PerDay: 2, PerMonth: 2}
	for i, want := range []bool{true, true, false} {
		if got := quota.Take(t, s, limits, now); got != want {
			t.Fatalf("take %d as broker: %v, want %v", i+1, got, want)
		}
	}
	if got := quota.Usage(t, s, now); got != [3]int{2, 2, 2} {
		t.Fatalf("usage as broker: %v", got)
	}
	// The log: append, integrate, checkpoint, cosignatures, all as broker.
	if _, err := s.AppendLeaf(ctx, "dead_letter:t:0:1", storetest.DeadLetterLeaf(t, 1)); err != nil {
		t.Fatalf("append leaf as broker: %v", err)
	}
	signer := storetest.LogKey(t, "certless.test/role")
	if n, err := s.Integrate(ctx, 0, storetest.Integrator(signer, "certless.test/role")); n != 2 || err != nil {
		t.Fatalf("integrate as broker: %d %v", n, err)
	}
	if err := s.SaveCosignature(ctx, 2, "witness.test/w", []byte("— witness.test/w AAAA\n")); err != nil {
		t.Fatalf("save cosignature as broker: %v", err)
	}

	broker, err := pgx.Connect(ctx, brokerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close(ctx)
	for _, q := range []string{
		`UPDATE decisions SET receipt = 'forged'`,
		`DELETE FROM decisions`,
		`TRUNCATE decisions`,
		`DELETE FROM decisions_schema_version`,
		`CREATE TABLE decisions_shadow (x int)`,
		`DROP INDEX decisions_agency_request_id`,
		`DELETE FROM quota_usage`,
		`TRUNCATE quota_usage`,
		`ALTER TABLE quota_usage DROP CONSTRAINT quota_usage_used_check`,
		`UPDATE tlog_leaves SET data = 'forged'`,
		`DELETE FROM tlog_leaves`,
		`UPDATE tlog_hashes SET hash = hash`,
		`DELETE FROM tlog_hashes`,
		`UPDATE tlog_checkpoints SET note = 'forged'`,
		`DELETE FROM tlog_checkpoints`,
		`DELETE FROM tlog_cosignatures`,
		`TRUNCATE tlog_leaves`,
		`DELETE FROM tlog_sequence`,
	} {
		_, err := broker.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "42704") {
			t.Errorf("%s as broker: err %v, want permission denied", q, err)
		}
	}
	if n, err := s.Count(ctx); n != 1 || err != nil {
		t.Fatalf("count after attempts: %d %v", n, err)
	}
}

// TestPostgresQuotaTwoBrokers: two stores on one database, as two brokers
// in one consumer group, take concurrently from one budget straddling its
// limit; exactly the limit succeed between them.
func TestPostgresQuotaTwoBrokers(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDB(t)
	var brokers []store.Quotas
	for range 2 {
		s, err := store.Open(ctx, dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		brokers = append(brokers, s)
	}
	now := time.Date(2026, 12, 31, 23, 59, 59, 0, store.Beijing)
	for _, tc := range []struct {
		name  string
		l     store.Limits
		n     int
		want  int
		usage [3]int
	}{
		{"minute", store.Limits{PerMinute: 37}, 80, 37, [3]int{37, 0, 0}},
		{"day", store.Limits{PerMinute: 1000, PerDay: 41, PerMonth: 1000}, 100, 41, [3]int{41, 41, 41}},
		{"month", store.Limits{PerMinute: 1000, PerDay: 1000, PerMonth: 29}, 60, 29, [3]int{29, 29, 29}},
	} {
		b := storetest.Budget{Agency: "court-220102", AgreementID: "court-" + tc.name, Version: 1}
		if got := b.TakeAll(t, tc.n, tc.l, now, brokers...); got != tc.want {
			t.Errorf("%s: %d of %d takes from two brokers succeeded, want %d", tc.name, got, tc.n, tc.want)
		}
		for i, s := range brokers {
			if got := b.Usage(t, s, now); got != tc.usage {
				t.Errorf("%s: broker %d sees usage %v, want %v", tc.name, i, got, tc.usage)
			}
		}
		// Both brokers see the budget spent.
		for i, s := range brokers {
			if b.Take(t, s, tc.l, now) {
				t.Errorf("%s: broker %d took from a spent budget", tc.name, i)
			}
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := store.Open(ctx, "", store.Options{}); err == nil {
		t.Error("open empty DSN succeeded")
	}
	if _, err := store.Open(ctx, ":memory:", store.Options{BatchSize: -1}); err == nil {
		t.Error("open with negative batch size succeeded")
	}
	if _, err := store.Open(ctx, filepath.Join(t.TempDir(), "missing", "dir", "x.db"), store.Options{}); err == nil {
		t.Error("open in a missing directory succeeded")
	}
}

// Example shows the redelivery promise: the second Save of the same request
// returns the first receipt.
func Example() {
	ctx := context.Background()
	s, err := store.Open(ctx, ":memory:", store.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	sum := sha256.Sum256([]byte("the signed request bytes"))
	d := store.Decision{
		Digest:    "sha256:" + hex.EncodeToString(sum[:]),
		Agency:    "court-220102",
		RequestID: "01J0000000000000000000000",
		QueryType: "criminal_record",
		Outcome:   store.Answered,
		Receipt:   []byte("first signed receipt"),
		DecidedAt: time.Now(),
	}
	first, _ := s.Save(ctx, d)
	d.Receipt = []byte("a second, different receipt")
	again, _ := s.Save(ctx, d)
	fmt.Println(string(first.Receipt))
	fmt.Println(string(again.Receipt))
	// Output:
	// first signed receipt
	// first signed receipt
}

// The grants for the conventional broker role, to run as the schema owner
// after Migrate.
func ExamplePostgresRoleSQL() {
	fmt.Print(store.PostgresRoleSQL("certless_broker"))
	// Output:
	// GRANT USAGE ON SCHEMA public TO "certless_broker";
	// REVOKE ALL ON decisions, decisions_schema_version, quota_usage FROM "certless_broker";
	// GRANT SELECT, INSERT ON decisions TO "certless_broker";
	// GRANT SELECT ON decisions_schema_version TO "certless_broker";
	// GRANT SELECT, INSERT, UPDATE ON quota_usage TO "certless_broker";
	// REVOKE ALL ON tlog_sequence, tlog_integration, tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures FROM "certless_broker";
	// GRANT SELECT, UPDATE ON tlog_sequence, tlog_integration TO "certless_broker";
	// GRANT SELECT, INSERT ON tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures TO "certless_broker";
	// GRANT USAGE ON SEQUENCE tlog_checkpoints_id_seq TO "certless_broker";
	// REVOKE ALL ON status_allocation, revocations FROM "certless_broker";
	// GRANT SELECT, UPDATE ON status_allocation TO "certless_broker";
	// GRANT SELECT, INSERT ON revocations TO "certless_broker";
}

// BenchmarkSave measures parallel Saves of distinct decisions, group commit
// against one transaction per row:
//
//	go test ./broker/store -run '^$' -bench Save -benchtime 3s
func BenchmarkSave(b *testing.B) {
	backends := []struct {
		name string
		dsn  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return filepath.Join(b.TempDir(), "decisions.db") }},
		{"postgres", func(b *testing.B) string { return testenv.PostgresDB(b) }},
	}
	modes := []struct {
		name string
		opts store.Options
	}{
		{"batched", store.Options{}},
		{"batch1", store.Options{BatchSize: 1}},
	}
	parallelism := 64 // many in-flight requests, as from many partitions
	for _, be := range backends {
		for _, m := range modes {
			b.Run(be.name+"/"+m.name, func(b *testing.B) {
				s, err := store.Open(context.Background(), be.dsn(b), m.opts)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var seq atomic.Int64
				b.SetParallelism(parallelism)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						id := strconv.FormatInt(seq.Add(1), 10)
						d := storetest.Decision("court-220102", id, "bench")
						if _, err := s.Save(ctx, d); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64(st.Rows)/float64(max(st.Batches, 1)), "rows/batch")
			})
		}
	}
}

// BenchmarkSaveSerial measures one Save at a time: what a lone message pays
// for its durable commit, waiting included.
//
//	go test ./broker/store -run '^$' -bench SaveSerial
func BenchmarkSaveSerial(b *testing.B) {
	s, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "decisions.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Save(ctx, storetest.Decision("court-220102", strconv.Itoa(i), "serial")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Stats().Rows)/float64(max(s.Stats().Batches, 1)), "rows/batch")
}

// BenchmarkTake measures Take with all three windows limited (never full),
// serially and from parallel goroutines on one budget (every Take locks the
// same rows), on an SQLite file and on the real PostgreSQL:
//
//	go test ./broker/store -run '^$' -bench Take
func BenchmarkTake(b *testing.B) {
	backends := []struct {
		name string
		dsn  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return filepath.Join(b.TempDir(), "decisions.db") }},
		{"postgres", func(b *testing.B) string { return testenv.PostgresDB(b) }},
	}
	limits := store.Limits{PerMinute: 1 << 30, PerDay: 1 << 30, PerMonth: 1 << 30}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, store.Beijing)
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.Open(ctx, be.dsn(b), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			take := func(version int) error {
				ok, err := s.Take(ctx, "court-220102", "court-criminal-record", version, limits, now)
				if err == nil && !ok {
					err = errors.New("take refused under a limit never reached")
				}
				return err
			}
			b.Run("serial", func(b *testing.B) {
				for b.Loop() {
					if err := take(1); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel/one-budget", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := take(2); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			var budgets atomic.Int64
			b.Run("parallel/own-budgets", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					version := int(budgets.Add(1)) + 100
					for pb.Next() {
						if err := take(version); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkLookup measures the two reads every fresh message makes, Get
// (redelivery) and DigestByRequestID (replay), on an SQLite store holding
// lookupRows decisions with receipts of a realistic size (~2 KB), for
// stored (hit) and new (miss) keys:
//
//	go test ./broker/store -run '^$' -bench Lookup
func BenchmarkLookup(b *testing.B) {
	const lookupRows = 20000
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "decisions.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	receipt := make([]byte, 2048)
	for i := range receipt {
		receipt[i] = byte('a' + i%26)
	}
	stored := make([]store.Decision, lookupRows)
	for i := range stored {
		stored[i] = storetest.Decision("court-220102", "req-"+strconv.Itoa(i), "lookup")
		stored[i].Receipt = receipt
	}
	// Concurrent Saves, so that they share transactions.
	var next atomic.Int64
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(stored) {
					errs <- nil
					return
				}
				if _, err := s.Save(ctx, stored[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	missing := storetest.Decision("court-220102", "never-saved", "lookup")
	b.Run("get/hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, ok, err := s.Get(ctx, stored[i%lookupRows].Digest); !ok || err != nil {
				b.Fatal(ok, err)
			}
			i += 7919
		}
	})
	b.Run("get/miss", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.Get(ctx, missing.Digest); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("id/hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			d := stored[i%lookupRows]
			if _, ok, err := s.DigestByRequestID(ctx, d.Agency, d.RequestID); !ok || err != nil {
				b.Fatal(ok, err)
			}
			i += 7919
		}
	})
	b.Run("id/miss", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.DigestByRequestID(ctx, missing.Agency, missing.RequestID); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("get/hit/parallel", func(b *testing.B) {
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(seq.Add(7919) % lookupRows)
				if _, ok, err := s.Get(ctx, stored[i].Digest); !ok || err != nil {
					b.Error(ok, err)
					return
				}
			}
		})
	})
}

// TestPostgresLogTwoBrokers: two stores on one database, as two brokers,
// save decisions and dead letters concurrently and integrate concurrently:
// one sequence, no gap, no fork, no index used twice.
func TestPostgresLogTwoBrokers(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDB(t)
	var brokers []store.Store
	for range 2 {
		s, err := store.Open(ctx, dsn, store.Options{BatchSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		brokers = append(brokers, s)
	}
	var ds []store.Decision
	for i := range 400 {
		ds = append(ds, storetest.Decision("court-220102", fmt.Sprintf("r-%d", i), "two-brokers"))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ds)+40)
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := brokers[i%2].Save(ctx, d); err != nil {
				errs <- err
			}
		}()
	}
	// The same 20 dead letters reach both brokers (a redelivery after a
	// rebalance): each takes one index.
	for i := range 20 {
		for _, s := range brokers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.AppendLeaf(ctx, fmt.Sprintf("dead_letter:t:1:%d", i), storetest.DeadLetterLeaf(t, i)); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	storetest.CheckLog(t, ds, 420, brokers...)
}

// BenchmarkIntegrate measures one checkpoint round of the transparency
// log on an SQLite store: 256 new leaves read back, their tree hashes
// computed and stored, and the checkpoint signed and stored, as the
// checkpointer does every second under load:
//
//	go test ./broker/store -run '^$' -bench Integrate
func BenchmarkIntegrate(b *testing.B) {
	const perRound = 256
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "decisions.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const origin = "certless.test/bench"
	integrate := storetest.Integrator(storetest.LogKey(b, origin), origin)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for range perRound {
			if _, err := s.AppendLeaf(ctx, fmt.Sprintf("dead_letter:bench:%d", n), storetest.DeadLetterLeaf(b, n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.StartTimer()
		size, err := s.Integrate(ctx, perRound, integrate)
		if err != nil || size != int64(n) {
			b.Fatalf("integrated %d of %d: %v", size, n, err)
		}
	}
	b.ReportMetric(float64(perRound*b.N)/b.Elapsed().Seconds(), "leaves/s")
}
