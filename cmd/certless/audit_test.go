package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/broker/store/storetest"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/translog"
)

// auditLogFixture is a data folder whose decision store holds a log of 21
// leaves (20 decisions and a dead letter) under checkpoints of sizes 5,
// 12 and 21, as a broker leaves it.
type auditLogFixture struct {
	dir     string
	cfg     *config.Config
	dsn     string
	digests []string // by leaf index; "" for the dead letter
	signer  note.Signer
}

// auditSizes are the fixture's checkpoint sizes.
var auditSizes = []int64{5, 12, 21}

func newAuditLogFixture(t *testing.T, dsn string) *auditLogFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if dsn != "" {
		if err := os.WriteFile(filepath.Join(dir, config.FileName), fmt.Appendf(nil, "store:\n  dsn: %q\n", dsn), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load("", func(k string) string {
		if k == config.EnvData {
			return dir
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureLogKey(cfg, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(cfg.LogKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	f := &auditLogFixture{dir: dir, cfg: cfg, dsn: cfg.Store.DSN, signer: signer}
	s, err := store.Open(ctx, f.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cp := &checkpoint.Checkpointer{Store: s, Origin: cfg.LogOrigin(), Signer: func() (note.Signer, error) { return signer, nil }}
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for i := range 21 {
		if i == 9 {
			dead, err := translog.Leaf{Kind: translog.KindDeadLetter, Time: translog.FormatTime(base.Add(time.Duration(i) * time.Second)),
				Outcome: "dead_letter", Reason: "bad_signature", Receipt: translog.Digest([]byte("dead letter"))}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendLeaf(ctx, "dead_letter:certless.requests:0:9", dead); err != nil {
				t.Fatal(err)
			}
			f.digests = append(f.digests, "")
		} else {
			d := storetest.Decision("court-220102", "req-"+strconv.Itoa(i), "audit")
			d.DecidedAt = base.Add(time.Duration(i) * time.Second)
			d.Type = "request"
			got, err := s.Save(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if got.LeafIndex != int64(i) {
				t.Fatalf("decision %d at leaf %d", i, got.LeafIndex)
			}
			f.digests = append(f.digests, d.Digest)
		}
		for _, size := range auditSizes {
			if int64(i+1) == size {
				if err := cp.Round(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return f
}

func (f *auditLogFixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, append([]string{"--data", f.dir, "audit"}, args...)...)
}

// exec runs statements on the SQLite store directly, as someone with the
// file would.
func (f *auditLogFixture) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	if strings.HasPrefix(f.dsn, "postgres") {
		c, err := pgx.Connect(ctx, f.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		q := query
		for k := range args {
			q = strings.Replace(q, "?", "$"+strconv.Itoa(k+1), 1)
		}
		tag, err := c.Exec(ctx, q, args...)
		if err != nil || tag.RowsAffected() == 0 {
			t.Fatalf("%s: %v (%d rows)", query, err, tag.RowsAffected())
		}
		return
	}
	db, err := sql.Open("sqlite", f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s changed nothing", query)
	}
}

// leafOf is the leaf of decision i of the fixture with other content.
func (f *auditLogFixture) otherLeaf(t *testing.T, i int, outcome string) []byte {
	t.Helper()
	d := storetest.Decision("court-220102", "req-"+strconv.Itoa(i), "audit")
	d.DecidedAt = time.Date(2026, 12, 1, 8, 0, i, 0, time.UTC)
	d.Type = "request"
	d.Outcome = outcome
	b, err := store.DecisionLeaf(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyFails runs audit verify, wants exit 1 and every one of words in
// its output.
func (f *auditLogFixture) verifyFails(t *testing.T, words ...string) string {
	t.Helper()
	code, out, errs := f.run(t, "verify")
	t.Logf("audit verify: exit %d\n%s%s", code, out, lastLine(errs))
	if code != exitFailure {
		t.Fatalf("audit verify of a tampered log: exit %d, want %d", code, exitFailure)
	}
	for _, w := range words {
		if !strings.Contains(out+errs, w) {
			t.Errorf("audit output does not say %q", w)
		}
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexAny(s, "\n\r"); i >= 0 {
		s = s[i+1:]
	}
	return s + "\n"
}

func (f *auditLogFixture) verifyPasses(t *testing.T) {
	t.Helper()
	code, out, errs := f.run(t, "verify", "-v")
	if code != exitOK {
		t.Fatalf("audit verify of a clean log: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("audit verify: %s", out)
	if !strings.Contains(out, "log verified: 21 leaves, 3 checkpoints, tree head 21 ") || !strings.Contains(out, "; 20 decisions") {
		t.Errorf("summary: %q", out)
	}
	for _, pair := range []string{"size 5 is a prefix of the checkpoint of size 12", "size 12 is a prefix of the checkpoint of size 21"} {
		if !strings.Contains(out, pair) {
			t.Errorf("--verbose does not report %q", pair)
		}
	}
	// stderr is no terminal here: no progress bar (tty.go).
	if strings.Contains(errs, "auditing the log") || strings.Contains(errs, "\r") {
		t.Errorf("a progress bar on a stderr that is no terminal: %q", errs)
	}
}

func TestAuditVerifyCleanStore(t *testing.T) {
	f := newAuditLogFixture(t, "")
	before := readFile(t, f.dsn)
	f.verifyPasses(t)
	if readFile(t, f.dsn) != before {
		t.Error("audit verify changed the SQLite file")
	}
}

func TestAuditOpensSQLiteReadOnly(t *testing.T) {
	for dsn, want := range map[string]string{
		"/data/decisions.db":      "file:/data/decisions.db?mode=ro",
		"/da?ta/10%#.db":          "file:/da%3fta/10%25%23.db?mode=ro",
		"file:/d.db?cache=shared": "file:/d.db?cache=shared&mode=ro",
		"file:/d.db":              "file:/d.db?mode=ro",
		"file:/d.db?mode=rw":      "file:/d.db?mode=rw",
		":memory:":                ":memory:",
		"postgres://a@h/db?x=y":   "postgres://a@h/db?x=y",
		"postgresql://a@h/db":     "postgresql://a@h/db",
	} {
		if got := readOnlyDSN(dsn); got != want {
			t.Errorf("readOnlyDSN(%q) = %q, want %q", dsn, got, want)
		}
	}
	// A read-only store refuses a write.
	f := newAuditLogFixture(t, "")
	s, err := openAuditStore(context.Background(), f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AppendLeaf(context.Background(), "dead_letter:x:0:1", f.otherLeaf(t, 1, store.NotFound)); err == nil {
		t.Error("the audit's store appended a leaf")
	}
}

func TestAuditVerifyLeafAltered(t *testing.T) {
	// In place, stored hashes left alone: the stored record hash names it.
	f := newAuditLogFixture(t, "")
	f.exec(t, `UPDATE tlog_leaves SET data = ? WHERE idx = 7`, f.otherLeaf(t, 7, store.NotFound))
	f.verifyFails(t, "leaf 7 (checkpoint of size 12)", "stored record hash", `outcome "not_found" in the leaf, "answered" in the store`)
}

func TestAuditVerifyLeafAndHashesRewritten(t *testing.T) {
	// The leaf and every stored hash rewritten to match: the checkpoint of
	// size 12 no longer matches, and the decision names the leaf.
	f := newAuditLogFixture(t, "")
	f.exec(t, `UPDATE tlog_leaves SET data = ? WHERE idx = 7`, f.otherLeaf(t, 7, store.NotFound))
	f.rewriteHashes(t)
	f.verifyFails(t, "leaf 7 (checkpoint of size 12)", "disagrees with the stored decision of request "+f.digests[7], "no longer matches the leaves")
}

// rewriteHashes recomputes tlog_hashes from the (tampered) leaves.
func (f *auditLogFixture) rewriteHashes(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, f.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := s.ReadLeaves(ctx, 0, 100)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := translog.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		if _, err := tree.Append(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range tree.Drain() {
		f.exec(t, `UPDATE tlog_hashes SET hash = ? WHERE idx = ?`, h.Hash[:], h.Index)
	}
}

func TestAuditVerifyLeafDeleted(t *testing.T) {
	f := newAuditLogFixture(t, "")
	f.exec(t, `DELETE FROM tlog_leaves WHERE idx = 7`)
	f.verifyFails(t, "leaf 7: missing", "decision "+f.digests[7]+" (decided 2026-12-01T08:00:07.000000Z) has no leaf")
}

func TestAuditVerifyLastLeafDeleted(t *testing.T) {
	// Without a gap: the log is one leaf shorter than its checkpoint, and
	// the decision has no leaf.
	f := newAuditLogFixture(t, "")
	f.exec(t, `DELETE FROM tlog_leaves WHERE idx = 20`)
	out := f.verifyFails(t, "decision "+f.digests[20])
	if !strings.Contains(out, "checkpoint of size 21") && !strings.Contains(out, "leaf 20") {
		t.Errorf("the log problem names neither the checkpoint nor the leaf: %s", out)
	}
}

func TestAuditVerifyCheckpointFork(t *testing.T) {
	// The log key signed a second tree of size 12: an equivocating log.
	f := newAuditLogFixture(t, "")
	other := rootOfLeaves(t, 12, f.otherLeaf(t, 3, store.NotFound))
	cp, err := translog.SignCheckpoint(f.signer, f.cfg.LogOrigin(), other)
	if err != nil {
		t.Fatal(err)
	}
	f.exec(t, `INSERT INTO tlog_checkpoints (size, note, created_at) VALUES (12, ?, '2026-12-01T09:00:00.000000Z')`, cp)
	f.verifyFails(t, "checkpoint of size 12: fork", "equivocated")
}

// rootOfLeaves is the root of n leaves, distinct from the fixture's.
func rootOfLeaves(t *testing.T, n int, first []byte) tlog.Tree {
	t.Helper()
	tree, err := translog.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l := first
		if i > 0 {
			l = fmt.Appendf(nil, "leaf %d", i)
		}
		if _, err := tree.Append(l); err != nil {
			t.Fatal(err)
		}
	}
	r, err := tree.Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAuditVerifyCheckpointAltered(t *testing.T) {
	f := newAuditLogFixture(t, "")
	other := rootOfLeaves(t, 12, []byte("x"))
	ctx := context.Background()
	s, err := store.Open(ctx, f.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var note12 []byte
	s.Checkpoints(ctx, func(b []byte) error {
		if c, _ := translog.ParseCheckpointBody(b); c.N == 12 {
			note12 = b
		}
		return nil
	})
	s.Close()
	body, sig, _ := strings.Cut(string(note12), "\n\n")
	lines := strings.Split(body, "\n")
	lines[2] = other.Hash.String()
	f.exec(t, `UPDATE tlog_checkpoints SET note = ? WHERE size = 12`, []byte(strings.Join(lines, "\n")+"\n\n"+sig))
	f.verifyFails(t, "checkpoint of size 12", "does not verify", "invalid signature")
}

func TestAuditVerifyDecisionAltered(t *testing.T) {
	// The decision changed after it was logged; the leaf, proven by the
	// checkpoint, says what it was.
	f := newAuditLogFixture(t, "")
	f.exec(t, `UPDATE decisions SET outcome = 'not_found' WHERE digest = ?`, f.digests[15])
	f.verifyFails(t, "leaf 15:", "request "+f.digests[15], `outcome "answered" in the leaf, "not_found" in the store`,
		"as the log signed it (checkpoint of size 21)", "changed after the leaf was logged")
}

func TestAuditVerifyNeedsTheLogKey(t *testing.T) {
	f := newAuditLogFixture(t, "")
	// Another log's key: every checkpoint fails.
	_, vkey, err := translog.NewLogKey(f.cfg.LogOrigin())
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.vkey")
	if err := os.WriteFile(other, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := f.run(t, "verify", "--log-key", other)
	if code != exitFailure || !strings.Contains(out, "checkpoint of size 5") || !strings.Contains(out, "does not verify") {
		t.Fatalf("audit with another log's key: exit %d\n%s", code, out)
	}
	// A quorum of witnesses nobody asked: the head lacks cosignatures.
	code, out, _ = f.run(t, "verify", "--witness", writeWitnessKey(t), "--quorum", "1")
	if code != exitFailure || !strings.Contains(out, "checkpoint of size 21") || !strings.Contains(out, "0 of 1 required cosignatures") {
		t.Fatalf("audit with a witness quorum: exit %d\n%s", code, out)
	}
}

func writeWitnessKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := torchwood.NewCosignatureSigner("witness.example/w1", priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "w1.vkey")
	if err := os.WriteFile(p, []byte(w.Verifier().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuditProveAndConsistency(t *testing.T) {
	f := newAuditLogFixture(t, "")
	code, out, errs := f.run(t, "prove", "--receipt", f.digests[8])
	if code != exitOK {
		t.Fatalf("audit prove: exit %d %s", code, errs)
	}
	p, err := translog.ParseProof([]byte(out))
	if err != nil {
		t.Fatalf("audit prove printed no C2SP tlog-proof: %v\n%s", err, out)
	}
	v, err := note.NewVerifier(strings.TrimSpace(readFile(t, logVerifierFile(f.cfg))))
	if err != nil {
		t.Fatal(err)
	}
	c, err := translog.OpenCheckpoint(p.Checkpoint, f.cfg.LogOrigin(), v)
	if err != nil {
		t.Fatal(err)
	}
	if p.Index != 8 || c.N != 12 || p.VerifyInclusion(c) != nil {
		t.Fatalf("proof of leaf %d in %d: %v", p.Index, c.N, p.VerifyInclusion(c))
	}
	if code, _, errs := f.run(t, "prove", "--receipt", "sha256:"+strings.Repeat("0", 64)); code != exitFailure || !strings.Contains(errs, "no leaf") {
		t.Errorf("prove of an unknown request: exit %d %s", code, errs)
	}

	// Consistency between stored sizes, and with a kept checkpoint file.
	code, out, errs = f.run(t, "consistency", "5", "21")
	if code != exitOK || !strings.Contains(errs, "consistent: the tree of size 5 is a prefix of the tree of size 21") {
		t.Fatalf("consistency 5 21: exit %d\n%s%s", code, out, errs)
	}
	hashes := strings.Fields(out)
	proof := make(tlog.TreeProof, len(hashes))
	for k, h := range hashes {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(b) != tlog.HashSize {
			t.Fatalf("proof line %q", h)
		}
		proof[k] = tlog.Hash(b)
	}
	roots := map[int64]tlog.Hash{}
	s, err := store.Open(context.Background(), f.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Checkpoints(context.Background(), func(b []byte) error {
		c, err := translog.ParseCheckpointBody(b)
		roots[c.N] = c.Hash
		return err
	})
	s.Close()
	if err := tlog.CheckTree(proof, 21, roots[21], 5, roots[5]); err != nil || len(proof) == 0 {
		t.Fatalf("printed proof (%d hashes) does not prove 5 -> 21: %v", len(proof), err)
	}
	kept := filepath.Join(t.TempDir(), "kept")
	if err := os.WriteFile(kept, p.Checkpoint, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := f.run(t, "consistency", kept, "21"); code != exitOK {
		t.Fatalf("consistency FILE 21: exit %d %s", code, errs)
	}
	// A forked checkpoint of size 21, signed by the log key.
	forged, err := translog.SignCheckpoint(f.signer, f.cfg.LogOrigin(), rootOfLeaves(t, 21, []byte("y")))
	if err != nil {
		t.Fatal(err)
	}
	fork := filepath.Join(t.TempDir(), "fork")
	if err := os.WriteFile(fork, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = f.run(t, "consistency", "12", fork)
	if code != exitFailure || !strings.Contains(errs, "not consistent") {
		t.Fatalf("consistency with a fork: exit %d %s", code, errs)
	}
	// The kept checkpoint makes verify catch a log re-signed after a cut.
	code, out, _ = f.run(t, "verify", "--known", fork)
	if code != exitFailure || !strings.Contains(out, "checkpoint of size 21: fork") {
		t.Fatalf("verify --known fork: exit %d\n%s", code, out)
	}
}

func TestAuditVerifyServedTiles(t *testing.T) {
	f := newAuditLogFixture(t, "")
	ctx := context.Background()
	s, err := store.Open(ctx, f.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(logHandler(s, func() (string, error) { return readFile(t, logVerifierFile(f.cfg)), nil }))
	defer srv.Close()
	code, out, errs := f.run(t, "verify", "--url", srv.URL)
	if code != exitOK || !strings.Contains(out, "log verified: 21 leaves, 1 checkpoint, tree head 21 ") {
		t.Fatalf("audit verify --url: exit %d\n%s%s", code, out, errs)
	}
	f.exec(t, `UPDATE tlog_leaves SET data = ? WHERE idx = 7`, f.otherLeaf(t, 7, store.NotFound))
	code, out, errs = f.run(t, "verify", "--url", srv.URL)
	if code != exitFailure || !strings.Contains(errs, "entry 7") {
		t.Fatalf("audit verify --url of a tampered log: exit %d\n%s%s", code, out, errs)
	}
}

// TestAuditVerifyPostgres audits a PostgreSQL store under the SELECT-only
// role PostgresAuditorRoleSQL grants, then catches a leaf altered by the
// schema owner.
func TestAuditVerifyPostgres(t *testing.T) {
	ctx := context.Background()
	adminDSN := testenv.PostgresDB(t)
	f := newAuditLogFixture(t, adminDSN)
	admin, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role, password := "certless_auditor_"+testenv.Random(4), testenv.Random(12)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password)); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), adminDSN)
		if err != nil {
			t.Logf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	})
	code, grants, _ := f.run(t, "grants", "--role", role)
	if code != exitOK {
		t.Fatalf("audit grants: exit %d", code)
	}
	if _, err := admin.Exec(ctx, grants); err != nil {
		t.Fatalf("grant: %v", err)
	}
	u, err := url.Parse(adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	auditor := &auditLogFixture{dir: t.TempDir(), cfg: f.cfg, dsn: u.String(), digests: f.digests}
	if err := os.WriteFile(filepath.Join(auditor.dir, config.FileName), fmt.Appendf(nil, "store:\n  dsn: %q\nkeys_dir: %q\n", u.String(), f.cfg.KeysDir), 0o600); err != nil {
		t.Fatal(err)
	}
	auditor.verifyPasses(t)

	// The role cannot write what it audits.
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `UPDATE tlog_leaves SET data = data WHERE idx = 0`); err == nil {
		t.Fatal("the auditor role updated a leaf")
	}
	if _, err := c.Exec(ctx, `DELETE FROM decisions`); err == nil {
		t.Fatal("the auditor role deleted decisions")
	}

	f.exec(t, `UPDATE tlog_leaves SET data = ? WHERE idx = 7`, f.otherLeaf(t, 7, store.NotFound))
	auditor.verifyFails(t, "leaf 7 (checkpoint of size 12)", "stored record hash")
	f.exec(t, `UPDATE decisions SET outcome = 'not_found' WHERE digest = ?`, f.digests[3])
	auditor.verifyFails(t, "leaf 3:", "request "+f.digests[3])
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
