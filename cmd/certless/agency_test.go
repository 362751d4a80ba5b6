package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// TestAgencyCLI drives `certless agency` on the dev data folder: the
// configuration's agencies are imported on first use, then docked,
// suspended, resumed, exported and imported, every change logged.
func TestAgencyCLI(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	cfg, err := ensureDevData(ctx, data, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	agency := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"--data", data, "agency", "--actor", "ops-test"}, args...)...)
	}

	code, out, errOut := agency("list")
	if code != exitOK {
		t.Fatalf("list: %d %s", code, errOut)
	}
	for _, a := range cfg.Agencies {
		if !strings.Contains(out, a.ID) {
			t.Errorf("list lacks config agency %s:\n%s", a.ID, out)
		}
	}
	if !strings.Contains(out, "jilin-records") || !strings.Contains(errOut, "first start: imported") {
		t.Errorf("list: first start import not shown:\n%s\n%s", out, errOut)
	}
	if _, _, errOut := agency("list"); strings.Contains(errOut, "first start") {
		t.Errorf("second list imported again: %s", errOut)
	}

	code, out, _ = agency("show", "edu-jian")
	var a directory.Agency
	if code != exitOK || json.Unmarshal([]byte(out), &a) != nil || a.Kind != "education" || a.Region != "220582" || a.EncryptionKey == nil {
		t.Fatalf("show: %d %s", code, out)
	}
	if code, _, _ := agency("show", "no-such"); code != exitFailure {
		t.Errorf("show unknown: exit %d", code)
	}

	if code, _, _ := agency("suspend", "notary-dunhua"); code != exitUsage {
		t.Errorf("suspend without --reason: exit %d", code)
	}
	if code, out, errOut := agency("suspend", "notary-dunhua", "--reason", "audit 2026-12"); code != exitOK || !strings.Contains(out, "notary-dunhua suspended by ops-test (audit 2026-12)") {
		t.Fatalf("suspend: %d %s %s", code, out, errOut)
	}
	if code, out, _ := agency("resume", "notary-dunhua"); code != exitOK || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %d %s", code, out)
	}

	// Dock a new agency from its JWKS file.
	k, err := keys.Generate("court-baicheng", "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS([]keys.Public{k.Public})
	jwksFile := filepath.Join(t.TempDir(), "court-baicheng.jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	dock := []string{"dock", "--id", "court-baicheng", "--level", "prefecture", "--region", "220800", "--name", "Baicheng Intermediate People's Court", "--kind", "court", "--jwks", jwksFile, "--contact", "ops@court-baicheng.example"}
	if code, out, errOut := agency(dock...); code != exitOK || !strings.Contains(out, "court-baicheng docked by ops-test") || !strings.Contains(out, "leaf ") {
		t.Fatalf("dock: %d %s %s", code, out, errOut)
	}
	if code, out, _ := agency(dock...); code != exitOK || !strings.Contains(out, "unchanged") {
		t.Fatalf("dock again: %d %s", code, out)
	}
	bad := append([]string{}, dock...)
	bad[6] = "220582" // a county, not a prefecture
	if code, _, errOut := agency(bad...); code != exitUsage || !strings.Contains(errOut, "is a county, not a prefecture") {
		t.Fatalf("dock at the wrong level: %d %s", code, errOut)
	}

	// Export validates against its schema; importing it again changes nothing.
	file := filepath.Join(t.TempDir(), "directory.json")
	wrote := fmt.Sprintf("wrote %d agencies and %d record sources", len(cfg.Agencies)+1, len(cfg.Adapters)) // the config's and court-baicheng
	if code, out, _ := agency("export", "--out", file); code != exitOK || !strings.Contains(out, wrote) {
		t.Fatalf("export: %d %s", code, out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate(directory.SchemaName, raw); err != nil {
		t.Fatalf("export does not validate: %v", err)
	}
	if code, out, _ := agency("import", file); code != exitOK || !strings.Contains(out, ": 0 changes") {
		t.Fatalf("import into the same directory: %d %s", code, out)
	}

	// Into another data folder: the new agency arrives as imported.
	other := t.TempDir()
	if _, err := ensureDevData(ctx, other, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "--data", other, "agency", "import", file)
	if code != exitOK || !strings.Contains(out, "court-baicheng imported") {
		t.Fatalf("import elsewhere: %d %s %s", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "--data", other, "agency", "import", filepath.Join(data, "config.yaml")); code != exitFailure {
		t.Errorf("import of a non-directory file: exit %d", code)
	}

	// Changes, and a leaf for each in the store's log.
	code, out, _ = agency("changes", "--json")
	var cs []directory.Change
	if code != exitOK || json.Unmarshal([]byte(out), &cs) != nil {
		t.Fatalf("changes: %d %s", code, out)
	}
	// The imported agencies and sources, court-baicheng docked, notary-dunhua
	// suspended and resumed.
	if want := len(cfg.Agencies) + len(cfg.Adapters) + 3; len(cs) != want {
		t.Fatalf("%d changes, want %d", len(cs), want)
	}
	st, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range cs {
		_, leaf, ok, err := st.Leaf(ctx, c.LeafKey())
		if err != nil || !ok {
			t.Fatalf("change %d has no leaf: %v", c.Seq, err)
		}
		l, err := translog.ParseLeaf(leaf)
		if err != nil || l.Kind != c.Entity || l.Subject != c.Digest || l.Reason != c.Change {
			t.Fatalf("leaf of change %d: %+v %v", c.Seq, l, err)
		}
	}
	if code, out, _ := agency("changes", "--since", "7"); code != exitOK || strings.Count(out, "\n") != len(cs)-7 {
		t.Fatalf("changes --since 7: %d %q", code, out)
	}
}
