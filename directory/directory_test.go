package directory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// backends runs fn on SQLite always, and on PostgreSQL when one is
// configured (testenv.PostgresDB skips otherwise).
func backends(t *testing.T, fn func(t *testing.T, dsn func() string)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func() string { return filepath.Join(t.TempDir(), "decisions.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, func() string { return testenv.PostgresDB(t) }) // skips without a server
	})
}

type env struct {
	dir *directory.Directory
	log store.Store
	dsn string
}

// open opens a directory and its log in one database, as the broker does.
func open(t *testing.T, dsn string) env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d, err := directory.Open(ctx, dsn, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	clock := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	d.SetClock(func() time.Time { clock = clock.Add(time.Second); return clock })
	return env{dir: d, log: st, dsn: dsn}
}

func jwks(t *testing.T, agency string, alg keys.Alg) []byte {
	t.Helper()
	k, err := keys.Generate(agency, "", alg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.MarshalJWKS([]keys.Public{k.Public})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encKey(t *testing.T, agency string) []byte {
	t.Helper()
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwks(t, agency, keys.ECDHES), &set); err != nil {
		t.Fatal(err)
	}
	return set.Keys[0]
}

func court(t *testing.T) directory.Agency {
	return directory.Agency{
		ID: "court-changchun", Level: "prefecture", Region: "220100", Kind: "court",
		Name: "Changchun Intermediate People's Court", Contact: "张三 +86 431 0000 0000",
		JWKS: jwks(t, "court-changchun", keys.EdDSA),
	}
}

func TestDockAndChanges(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		e := open(t, dsn())
		a := court(t)
		c, err := e.dir.Dock(ctx, a, "ops-alice")
		if err != nil {
			t.Fatal(err)
		}
		if c.Seq != 1 || c.Change != directory.Docked || c.Entity != directory.EntityAgency || c.LeafIndex < 0 || c.Before != nil {
			t.Fatalf("dock: %+v", c)
		}
		got, ok, err := e.dir.Get(ctx, a.ID)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if got.Status != directory.Active || got.Version != 1 || got.DockedBy != "ops-alice" || got.DockedAt.IsZero() || got.Name != a.Name {
			t.Fatalf("docked: %+v", got)
		}

		// Same content: nothing recorded.
		again, err := e.dir.Dock(ctx, a, "ops-bob")
		if err != nil || !again.None() {
			t.Fatalf("re-dock: %+v %v", again, err)
		}
		if v, _ := e.dir.Version(ctx); v != 1 {
			t.Fatalf("version after idempotent dock %d", v)
		}

		// Different content: updated, version 2, docked_by kept.
		a.Name = "长春市中级人民法院"
		up, err := e.dir.Dock(ctx, a, "ops-bob")
		if err != nil || up.Change != directory.Updated || up.Seq != 2 || up.Before == nil {
			t.Fatalf("update: %+v %v", up, err)
		}
		got, _, _ = e.dir.Get(ctx, a.ID)
		if got.Version != 2 || got.DockedBy != "ops-alice" || got.Name != a.Name {
			t.Fatalf("updated: %+v", got)
		}

		// Suspend, suspend again (nothing), resume.
		if _, err := e.dir.Suspend(ctx, a.ID, "ops-bob", ""); !errors.Is(err, directory.ErrInvalid) {
			t.Fatalf("suspend without reason: %v", err)
		}
		s, err := e.dir.Suspend(ctx, a.ID, "ops-bob", "key compromise reported 2026-12-01")
		if err != nil || s.Change != directory.SuspendedC || s.Note == "" {
			t.Fatalf("suspend: %+v %v", s, err)
		}
		if got, _, _ = e.dir.Get(ctx, a.ID); got.Status != directory.Suspended || got.Version != 3 {
			t.Fatalf("suspended: %+v", got)
		}
		if s2, err := e.dir.Suspend(ctx, a.ID, "ops-bob", "again"); err != nil || !s2.None() {
			t.Fatalf("suspend twice: %+v %v", s2, err)
		}
		// Docking again does not lift a suspension.
		if c, err := e.dir.Dock(ctx, a, "ops-bob"); err != nil || !c.None() {
			t.Fatalf("dock of a suspended agency: %+v %v", c, err)
		}
		r, err := e.dir.Resume(ctx, a.ID, "ops-bob", "")
		if err != nil || r.Change != directory.Resumed {
			t.Fatalf("resume: %+v %v", r, err)
		}
		if got, _, _ = e.dir.Get(ctx, a.ID); got.Status != directory.Active {
			t.Fatalf("resumed: %+v", got)
		}

		// Rotate the signing key.
		fresh := jwks(t, a.ID, keys.ES256)
		k, err := e.dir.RotateKey(ctx, a.ID, fresh, "ops-bob")
		if err != nil || k.Change != directory.KeyRotated {
			t.Fatalf("rotate: %+v %v", k, err)
		}
		got, _, _ = e.dir.Get(ctx, a.ID)
		if pubs, err := keys.ParseJWKS(got.JWKS); err != nil || len(pubs) != 1 || pubs[0].Alg != keys.ES256 {
			t.Fatalf("rotated JWKS %s: %v", got.JWKS, err)
		}
		if k2, err := e.dir.RotateKey(ctx, a.ID, fresh, "ops-bob"); err != nil || !k2.None() {
			t.Fatalf("rotate to the same key: %+v %v", k2, err)
		}
		if _, err := e.dir.Suspend(ctx, "no-such", "ops-bob", "x"); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("suspend unknown: %v", err)
		}

		// A record source.
		src := directory.Source{Name: "jilin-records", Level: "province", Region: "220000", Kind: "sql", Description: "省厅人口库"}
		if c, err := e.dir.DockSource(ctx, src, "ops-alice"); err != nil || c.Entity != directory.EntitySource || c.Change != directory.Docked {
			t.Fatalf("dock source: %+v %v", c, err)
		}
		if c, err := e.dir.DockSource(ctx, src, "ops-alice"); err != nil || !c.None() {
			t.Fatalf("re-dock source: %+v %v", c, err)
		}
		if ss, err := e.dir.ListSources(ctx); err != nil || len(ss) != 1 || ss[0].Name != src.Name {
			t.Fatalf("sources %+v %v", ss, err)
		}

		changes, err := e.dir.Changes(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"docked", "updated", "suspended", "resumed", "key_rotated", "docked"}
		if len(changes) != len(want) {
			t.Fatalf("%d changes, want %d: %+v", len(changes), len(want), changes)
		}
		for i, c := range changes {
			if c.Seq != int64(i+1) || c.Change != want[i] {
				t.Errorf("change %d: seq %d %s, want %s", i, c.Seq, c.Change, want[i])
			}
		}
		if later, _ := e.dir.Changes(ctx, 4); len(later) != 2 || later[0].Seq != 5 {
			t.Fatalf("changes since 4: %+v", later)
		}
		if v, _ := e.dir.Version(ctx); v != 6 {
			t.Fatalf("version %d", v)
		}
		checkLeaves(t, e, changes)
	})
}

// checkLeaves: every change has its leaf in the log, the leaf parses and
// holds the change's codes and digest, never the name or the contact.
func checkLeaves(t *testing.T, e env, changes []directory.Change) {
	t.Helper()
	ctx := context.Background()
	for _, c := range changes {
		if c.LeafIndex < 0 {
			t.Errorf("change %d has no leaf index", c.Seq)
			continue
		}
		idx, leaf, ok, err := e.log.Leaf(ctx, c.LeafKey())
		if err != nil || !ok || idx != c.LeafIndex {
			t.Fatalf("leaf of change %d: index %d ok %v %v, want %d", c.Seq, idx, ok, err, c.LeafIndex)
		}
		l, err := translog.ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("leaf of change %d: %v", c.Seq, err)
		}
		if l.Kind != c.Entity || l.Agency != c.ID || l.Reason != c.Change || l.Subject != translog.Digest(c.After) || l.Subject != c.Digest {
			t.Errorf("leaf of change %d: %+v for %+v", c.Seq, l, c)
		}
		if at, _ := l.TimeOf(); !at.Equal(c.At) {
			t.Errorf("leaf time %v, change at %v", at, c.At)
		}
		for _, secret := range []string{"Court", "张三", "+86", "长春", "jwks", "省厅"} {
			if bytes.Contains(leaf, []byte(secret)) {
				t.Errorf("leaf of change %d shows %q: %s", c.Seq, secret, leaf)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	e := open(t, filepath.Join(t.TempDir(), "d.db"))
	good := court(t)
	cases := []struct {
		name string
		edit func(a *directory.Agency)
		want string
	}{
		{"bad id", func(a *directory.Agency) { a.ID = "Court_X" }, "agency id"},
		{"unknown region", func(a *directory.Agency) { a.Region = "229999" }, "not a GB/T 2260 code"},
		{"level mismatch", func(a *directory.Agency) { a.Level = "county" }, "is a prefecture, not a county"},
		{"bad level", func(a *directory.Agency) { a.Level = "city" }, "not province, prefecture or county"},
		{"bad kind", func(a *directory.Agency) { a.Kind = "bank" }, "kind \"bank\""},
		{"no name", func(a *directory.Agency) { a.Name = "" }, "name is empty"},
		{"no jwks", func(a *directory.Agency) { a.JWKS = nil }, "no signing JWKS"},
		{"bad jwks", func(a *directory.Agency) { a.JWKS = []byte(`{"keys":[{"kty":"OKP"}]}`) }, "JWKS"},
		{"not json", func(a *directory.Agency) { a.JWKS = []byte(`nope`) }, "JWKS"},
		{"kid of another agency", func(a *directory.Agency) { a.JWKS = jwks(t, "edu-jian", keys.EdDSA) }, `names agency "edu-jian"`},
		{"encryption key in jwks", func(a *directory.Agency) { a.JWKS = jwks(t, a.ID, keys.ECDHES) }, "not a signing key"},
		{"signing key as encryption key", func(a *directory.Agency) { a.EncryptionKey = encKeyOf(t, jwks(t, a.ID, keys.EdDSA)) }, "want ECDH-ES+A256KW"},
		{"encryption key of another", func(a *directory.Agency) { a.EncryptionKey = encKey(t, "edu-jian") }, `names agency "edu-jian"`},
	}
	for _, c := range cases {
		a := good
		c.edit(&a)
		_, err := e.dir.Dock(ctx, a, "ops")
		if !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", c.name, err, c.want)
		}
	}
	if _, err := e.dir.Dock(ctx, good, ""); !errors.Is(err, directory.ErrInvalid) {
		t.Errorf("no actor: %v", err)
	}
	if _, err := e.dir.DockSource(ctx, directory.Source{Name: "x-src", Level: "province", Region: "220000", Kind: "ftp"}, "ops"); !errors.Is(err, directory.ErrInvalid) {
		t.Errorf("source kind ftp: %v", err)
	}
	if v, _ := e.dir.Version(ctx); v != 0 {
		t.Fatalf("refusals recorded %d changes", v)
	}
	// With an encryption key, all five example regions.
	for _, r := range []struct{ id, level, region string }{
		{"civil-affairs-jilin", "province", "220000"}, {"court-changchun", "prefecture", "220100"},
		{"court-baicheng", "prefecture", "220800"}, {"edu-jian", "county", "220582"}, {"notary-dunhua", "county", "222403"},
	} {
		a := directory.Agency{ID: r.id, Level: r.level, Region: r.region, Kind: "other", Name: r.id, JWKS: jwks(t, r.id, keys.EdDSA), EncryptionKey: encKey(t, r.id)}
		if _, err := e.dir.Dock(ctx, a, "ops"); err != nil {
			t.Errorf("%s: %v", r.id, err)
		}
	}
}

func encKeyOf(t *testing.T, set []byte) []byte {
	var s struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(set, &s); err != nil {
		t.Fatal(err)
	}
	return s.Keys[0]
}

func TestExportImportRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		e := open(t, dsn())
		a := court(t)
		a.EncryptionKey = encKey(t, a.ID)
		if _, err := e.dir.Dock(ctx, a, "ops-alice"); err != nil {
			t.Fatal(err)
		}
		b := directory.Agency{ID: "notary-dunhua", Level: "county", Region: "222403", Kind: "notary", Name: "Dunhua Notary Office", JWKS: jwks(t, "notary-dunhua", keys.EdDSA)}
		if _, err := e.dir.Dock(ctx, b, "ops-alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.dir.Suspend(ctx, b.ID, "ops-bob", "audit"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.dir.DockSource(ctx, directory.Source{Name: "jilin-records", Level: "province", Region: "220000", Kind: "sql"}, "ops-alice"); err != nil {
			t.Fatal(err)
		}
		f, err := e.dir.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := f.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.Validate(directory.SchemaName, raw); err != nil {
			t.Fatalf("export does not validate: %v\n%s", err, raw)
		}
		parsed, err := directory.ParseFile(raw)
		if err != nil {
			t.Fatal(err)
		}

		fresh := open(t, dsn())
		cs, err := fresh.dir.Import(ctx, parsed, "ops-carol")
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 3 {
			t.Fatalf("import recorded %d changes, want 3", len(cs))
		}
		for _, c := range cs {
			if c.Change != directory.Imported || c.Actor != "ops-carol" {
				t.Errorf("import change %+v", c)
			}
		}
		g, err := fresh.dir.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g.ExportedAt = f.ExportedAt
		if !reflect.DeepEqual(f, g) {
			t.Fatalf("round trip differs:\n%+v\n%+v", f, g)
		}
		// Importing the same file again changes nothing.
		if again, err := fresh.dir.Import(ctx, parsed, "ops-carol"); err != nil || len(again) != 0 {
			t.Fatalf("second import: %+v %v", again, err)
		}
		all, _ := fresh.dir.Changes(ctx, 0)
		checkLeaves(t, fresh, all)

		// A bad entry imports nothing.
		bad := parsed
		bad.Agencies = append([]directory.Agency{}, parsed.Agencies...)
		bad.Agencies[0].Name = "changed"
		bad.Agencies = append(bad.Agencies, directory.Agency{ID: "x-bad", Level: "county", Region: "220100"})
		if _, err := fresh.dir.Import(ctx, bad, "ops"); !errors.Is(err, directory.ErrInvalid) {
			t.Fatalf("bad import: %v", err)
		}
		if got, _, _ := fresh.dir.Get(ctx, parsed.Agencies[0].ID); got.Name == "changed" {
			t.Fatal("a refused import changed an entry")
		}
	})
}

func TestParseFileRefusesSchemaViolations(t *testing.T) {
	for _, doc := range []string{
		`{}`,
		`{"type":"agency_directory","exported_at":"2026-12-01T08:00:00Z","agencies":[],"sources":[],"extra":1}`,
		`{"type":"agency_directory","exported_at":"2026-12-01T08:00:00Z","agencies":[{"id":"a1"}],"sources":[]}`,
	} {
		if _, err := directory.ParseFile([]byte(doc)); !errors.Is(err, directory.ErrInvalid) {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestImportConfigOnlyWhenEmpty(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		kd := t.TempDir()
		agencies := []config.Agency{
			{ID: "court-changchun", Name: "Changchun Intermediate People's Court", Kind: "court", Level: "prefecture", Region: "220100"},
			{ID: "edu-jian", Name: "Ji'an City Education Bureau", Kind: "education", Level: "county", Region: "220582", EncryptReceipts: true},
			{ID: "misc-jilin", Name: "Something", Level: "province", Region: "220000"},
		}
		for _, a := range agencies {
			if _, err := keys.GenerateInDir(kd, a.ID, "", keys.EdDSA); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := keys.GenerateInDir(kd, "edu-jian", "", keys.ECDHES); err != nil {
			t.Fatal(err)
		}
		reg, err := keys.LoadDir(kd)
		if err != nil {
			t.Fatal(err)
		}
		sources := []config.Adapter{{Name: "jilin-records", Type: "sql", Region: "220000"}}
		e := open(t, dsn())
		cs, err := e.dir.ImportConfig(ctx, agencies, sources, reg, "first-start")
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 4 {
			t.Fatalf("first start imported %d, want 4", len(cs))
		}
		edu, _, _ := e.dir.Get(ctx, "edu-jian")
		if edu.EncryptionKey == nil || edu.Status != directory.Active {
			t.Fatalf("edu-jian: %+v", edu)
		}
		if misc, _, _ := e.dir.Get(ctx, "misc-jilin"); misc.Kind != "other" {
			t.Fatalf("kind of a config agency without one: %q", misc.Kind)
		}
		// Not empty any more: the config is not applied again, whatever it says.
		agencies[0].Name = "renamed in config"
		if cs, err := e.dir.ImportConfig(ctx, agencies, nil, reg, "second-start"); err != nil || len(cs) != 0 {
			t.Fatalf("second start: %+v %v", cs, err)
		}
		if c, _, _ := e.dir.Get(ctx, "court-changchun"); c.Name == "renamed in config" {
			t.Fatal("config overrode the directory")
		}
		checkLeaves(t, e, cs)

		// A config agency without keys is refused on an empty directory.
		empty := open(t, dsn())
		if _, err := empty.dir.ImportConfig(ctx, []config.Agency{{ID: "nokeys", Name: "n", Kind: "court", Level: "province", Region: "220000"}}, nil, reg, "x"); !errors.Is(err, directory.ErrInvalid) {
			t.Fatalf("agency without keys: %v", err)
		}
	})
}

// failingLog fails its first n appends.
type failingLog struct {
	store.Store
	fail int
}

func (f *failingLog) AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error) {
	if f.fail > 0 {
		f.fail--
		return 0, errors.New("log down")
	}
	return f.Store.AppendLeaf(ctx, key, leaf)
}

func TestUnloggedChangeIsLoggedLater(t *testing.T) {
	ctx := context.Background()
	dsn := filepath.Join(t.TempDir(), "d.db")
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fl := &failingLog{Store: st, fail: 1}
	d, err := directory.Open(ctx, dsn, fl)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := d.Dock(ctx, court(t), "ops")
	if !errors.Is(err, directory.ErrNotLogged) || c.Seq != 1 || c.LeafIndex != -1 {
		t.Fatalf("dock with the log down: %+v %v", c, err)
	}
	if got, ok, _ := d.Get(ctx, "court-changchun"); !ok || got.Version != 1 {
		t.Fatal("the change was not committed")
	}
	// A directory opened without a log records changes unlogged too.
	ro, err := directory.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.DockSource(ctx, directory.Source{Name: "jilin-records", Level: "province", Region: "220000", Kind: "sql"}, "ops"); err != nil {
		t.Fatal(err)
	}
	ro.Close()
	// The next Open appends both, in order.
	d2, err := directory.Open(ctx, dsn, st)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	cs, _ := d2.Changes(ctx, 0)
	if len(cs) != 2 {
		t.Fatalf("%d changes", len(cs))
	}
	checkLeaves(t, env{dir: d2, log: st}, cs)
	if cs[0].LeafIndex >= cs[1].LeafIndex {
		t.Fatalf("leaves out of order: %d, %d", cs[0].LeafIndex, cs[1].LeafIndex)
	}
}

func TestMemoryDSN(t *testing.T) {
	d, err := directory.Open(context.Background(), ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Dock(context.Background(), court(t), "ops"); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentWriters: two directories on one database dock at once;
// the history is gapless and every change is logged once.
func TestConcurrentWriters(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		e := open(t, dsn())
		other, err := directory.Open(ctx, e.dsn, e.log)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		const n = 8
		errs := make(chan error, 2*n)
		for i := range 2 * n {
			d := e.dir
			if i%2 == 1 {
				d = other
			}
			go func() {
				id := "court-" + string(rune('a'+i))
				_, err := d.Dock(ctx, directory.Agency{ID: id, Level: "province", Region: "220000", Kind: "court", Name: id, JWKS: jwks(t, id, keys.EdDSA)}, "ops")
				errs <- err
			}()
		}
		for range 2 * n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		cs, err := e.dir.Changes(ctx, 0)
		if err != nil || len(cs) != 2*n {
			t.Fatalf("%d changes, %v", len(cs), err)
		}
		seen := map[int64]bool{}
		for i, c := range cs {
			if c.Seq != int64(i+1) || seen[c.LeafIndex] {
				t.Fatalf("change %d: seq %d leaf %d", i, c.Seq, c.LeafIndex)
			}
			seen[c.LeafIndex] = true
		}
		checkLeaves(t, e, cs)
	})
}
