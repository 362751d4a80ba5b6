package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/broker/store/storetest"
)

// sqliteV1 is the schema of version 1 stores exactly as that code wrote it:
// a WITHOUT ROWID table keyed by digest, receipts inside the key b-tree.
const sqliteV1 = `
	CREATE TABLE decisions_schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	);
	CREATE TABLE IF NOT EXISTS decisions (
		digest     TEXT PRIMARY KEY,
		agency     TEXT NOT NULL,
		request_id TEXT NOT NULL,
		query_type TEXT NOT NULL,
		outcome    TEXT NOT NULL CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected')),
		reason     TEXT NOT NULL,
		replay     INTEGER NOT NULL CHECK (replay IN (0, 1)),
		receipt    BLOB NOT NULL,
		decided_at TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE UNIQUE INDEX IF NOT EXISTS decisions_agency_request_id
		ON decisions (agency, request_id) WHERE NOT replay AND request_id <> '';
	INSERT INTO decisions_schema_version (version, applied_at) VALUES (1, '2026-11-01T00:00:00.000000Z');`

// v1Decisions are rows of every kind, with receipts of every shape: binary,
// large enough to overflow a v1 b-tree cell, and small.
func v1Decisions() []store.Decision {
	var ds []store.Decision
	for i := range 300 {
		d := storetest.Decision("court-220102", "req-"+strconv.Itoa(i), "v1")
		d.Receipt = bytes.Repeat([]byte{byte(i), 0, 0xff, '\n'}, 1+i*7%700) // 4 B to 2.8 KB
		d.DecidedAt = d.DecidedAt.Add(time.Duration(i) * time.Second)
		ds = append(ds, d)
	}
	replay := storetest.Decision("court-220102", "req-7", "replayed")
	replay.Outcome, replay.Reason, replay.Replay = store.Rejected, "replayed_id", true
	noID := storetest.Decision("notary-222403", "", "unreadable")
	noID.QueryType, noID.Outcome, noID.Reason = "", store.Rejected, "payload_invalid"
	denied := storetest.Decision("edu-220582", "req-1", "denied")
	denied.Outcome, denied.Reason = store.Denied, "purpose_not_allowed"
	return append(ds, replay, noID, denied)
}

// writeV1 creates a version 1 store at path holding ds, as the version 1
// code stored them.
func writeV1(t *testing.T, path string, ds []store.Decision) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sqliteV1); err != nil {
		t.Fatalf("v1 schema: %v", err)
	}
	for _, d := range ds {
		if _, err := db.Exec(`INSERT INTO decisions (digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			d.Digest, d.Agency, d.RequestID, d.QueryType, d.Outcome, d.Reason, d.Replay, d.Receipt,
			d.DecidedAt.UTC().Format("2006-01-02T15:04:05.000000Z")); err != nil {
			t.Fatalf("v1 insert: %v", err)
		}
	}
}

func sqliteSchema(t *testing.T, path string) (version int, ddl string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT max(version) FROM decisions_schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT sql FROM sqlite_master WHERE tbl_name = 'decisions' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		all = append(all, s)
	}
	return version, strings.Join(all, ";\n")
}

func TestSQLiteMigratesV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "decisions.db")
	ds := v1Decisions()
	writeV1(t, path, ds)

	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("open v1 store: %v", err)
	}
	defer s.Close()
	v, ddl := sqliteSchema(t, path)
	if v != 9 || !strings.Contains(ddl, "latency_us") || !strings.Contains(ddl, "message_type") || !strings.Contains(ddl, "decisions_receipt_id") || !strings.Contains(ddl, "agreement_digest") || strings.Contains(ddl, "WITHOUT ROWID") || !strings.Contains(ddl, "decisions_digest") || !strings.Contains(ddl, "'internal_error'") {
		t.Fatalf("after migration: version %d, schema\n%s", v, ddl)
	}
	if n, err := s.Count(ctx); n != len(ds) || err != nil {
		t.Fatalf("count %d %v, want %d", n, err, len(ds))
	}
	for _, want := range ds {
		got, ok, err := s.Get(ctx, want.Digest)
		if !ok || err != nil {
			t.Fatalf("get %s: %v %v", want.Digest, ok, err)
		}
		if !bytes.Equal(got.Receipt, want.Receipt) {
			t.Fatalf("%s: receipt of %d bytes changed in migration", want.Digest, len(want.Receipt))
		}
		want.DecidedAt = want.DecidedAt.UTC().Truncate(time.Microsecond)
		if !got.DecidedAt.Equal(want.DecidedAt) || got.DecidedAt.Location() != time.UTC {
			t.Fatalf("%s: decided at %v, want %v", want.Digest, got.DecidedAt, want.DecidedAt)
		}
		// Version 1 stored no agreement: migrated rows cite none.
		want.AgreementID, want.AgreementVersion, want.AgreementDigest = "", 0, ""
		// Nor what names the receipt.
		want.ReceiptID, want.ReceiptDigest, want.AnswerFields = "", "", nil
		want.StatusIndex, want.SubjectKey, want.LatencyMicros = -1, "", -1 // nor its latency
		// Nor a leaf: decisions older than the log are not in it.
		if got.LeafIndex != -1 || got.Leaf != nil {
			t.Fatalf("%s: migrated decision has leaf %d", want.Digest, got.LeafIndex)
		}
		want.LeafIndex = -1
		got.Receipt, want.Receipt = nil, nil
		got.DecidedAt, want.DecidedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("migrated decision\n%+v\nwant\n%+v", got, want)
		}
	}

	// The indexes and constraints came along.
	held := ds[7]
	if digest, ok, err := s.DigestByRequestID(ctx, held.Agency, held.RequestID); digest != held.Digest || !ok || err != nil {
		t.Errorf("digest by id: %q %v %v, want %s", digest, ok, err, held.Digest)
	}
	var ce *store.ConflictError
	if _, err := s.Save(ctx, storetest.Decision(held.Agency, held.RequestID, "other")); !errors.As(err, &ce) || ce.Held != held.Digest {
		t.Errorf("same id, other digest after migration: %v", err)
	}
	again := ds[3]
	again.Receipt = []byte("a second receipt")
	if got, err := s.Save(ctx, again); err != nil || !bytes.Equal(got.Receipt, ds[3].Receipt) {
		t.Errorf("redelivered after migration: %q %v", got.Receipt, err)
	}
	fresh := storetest.Decision("court-220102", "after-migration", "v2")
	if _, err := s.Save(ctx, fresh); err != nil {
		t.Errorf("save after migration: %v", err)
	}

	// Version 3 stores the new outcomes.
	unavailable := storetest.Decision("court-220102", "unavailable-after-migration", "v3")
	unavailable.Outcome, unavailable.Reason = store.Unavailable, "retries_exhausted"
	if _, err := s.Save(ctx, unavailable); err != nil {
		t.Errorf("save an unavailable decision after migration: %v", err)
	}
	// Version 4 counts quotas.
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, store.Beijing)
	for i, want := range []bool{true, false} {
		if ok, err := s.Take(ctx, "court-220102", "court-criminal-record", 1, store.Limits{PerDay: 1}, now); ok != want || err != nil {
			t.Errorf("take %d after migration: %v %v, want %v", i+1, ok, err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening finds version 5 and changes nothing.
	s, err = store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if n, err := s.Count(ctx); n != len(ds)+2 || err != nil {
		t.Fatalf("count after reopen: %d %v, want %d", n, err, len(ds)+2)
	}
}

// TestSQLiteMigrationIsAtomic: a migration that fails half way leaves the
// version 1 store as it was.
func TestSQLiteMigrationIsAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "decisions.db")
	ds := v1Decisions()
	writeV1(t, path, ds)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// An index name taken elsewhere fails the migration at its last
	// statement: after the copy, the DROP and the RENAME.
	if _, err := db.Exec(`CREATE TABLE stray (d TEXT); CREATE INDEX decisions_digest ON stray (d)`); err != nil {
		t.Fatal(err)
	}
	if s, err := store.Open(ctx, path, store.Options{}); err == nil {
		s.Close()
		t.Fatal("migration succeeded with its index name taken")
	} else {
		t.Logf("failed migration: %v", err)
	}
	if v, ddl := sqliteSchema(t, path); v != 1 || !strings.Contains(ddl, "WITHOUT ROWID") {
		t.Fatalf("after a failed migration: version %d, schema\n%s", v, ddl)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM decisions`).Scan(&n); err != nil || n != len(ds) {
		t.Fatalf("after a failed migration: %d rows %v, want %d", n, err, len(ds))
	}

	if _, err := db.Exec(`DROP TABLE stray`); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("migrate after removing the stray index: %v", err)
	}
	defer s.Close()
	if n, err := s.Count(ctx); n != len(ds) || err != nil {
		t.Fatalf("count %d %v, want %d", n, err, len(ds))
	}
}
