package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
)

func pickUpLine(dir string) string {
	return "a running broker picks this up within 2s (it polls " + dir + "), or at once on SIGHUP\n"
}

func TestKeysGenerateAndRevokeSayWhenTheBrokerSeesThem(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "keys", "generate", "--agency", "court-x", "--key-id", "k1", "--dir", dir)
	if code != exitOK || !strings.HasPrefix(out, "generated court-x/k1 (EdDSA, use sig)\n") || !strings.HasSuffix(out, pickUpLine(dir)) {
		t.Fatalf("keys generate: %d %q %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "keys", "generate", "--agency", "court-x", "--dir", dir)
	if code != exitOK || !regexp.MustCompile(`^generated court-x/k\d{8}T\d{6}Z-[0-9a-f]{6} `).MatchString(out) {
		t.Fatalf("keys generate with a generated id: %d %q %s", code, out, errs)
	}

	// The kid as the argument, as the README writes it, or with --kid.
	code, out, errs = runCLI(t, "keys", "revoke", "court-x/k1", "--at", "2026-12-01T08:00:00Z", "--dir", dir)
	if code != exitOK || out != "revoked court-x/k1 at 2026-12-01T08:00:00Z\n"+pickUpLine(dir) {
		t.Fatalf("keys revoke KID: %d %q %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "keys", "revoke", "--kid", "court-x/k1", "--at", "2026-11-01T08:00:00Z", "--dir", dir)
	if code != exitOK || !strings.HasPrefix(out, "revoked court-x/k1 at 2026-11-01T08:00:00Z\n") {
		t.Fatalf("keys revoke --kid: %d %q %s", code, out, errs)
	}
	reg, err := keys.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := reg.Lookup("court-x/k1"); !p.RevokedAt.Equal(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("revoked_at %v", p.RevokedAt)
	}
	for _, args := range [][]string{
		{"keys", "revoke", "--dir", dir},
		{"keys", "revoke", "court-x/k1", "--kid", "court-x/k2", "--dir", dir},
		{"keys", "revoke", "court-x/k1", "court-x/k2", "--dir", dir},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("certless %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
}

// agencyStack stands for an agency's own JOSE tooling: it makes keys and
// publishes their public set; the broker never sees the private halves.
func agencyStack(t *testing.T, agency string, algs ...keys.Alg) ([]*keys.Private, []byte) {
	t.Helper()
	var ks []*keys.Private
	var pubs []keys.Public
	for i, alg := range algs {
		k, err := keys.Generate(agency, "hsm"+string(rune('1'+i)), alg)
		if err != nil {
			t.Fatal(err)
		}
		ks, pubs = append(ks, k), append(pubs, k.Public)
	}
	b, err := keys.MarshalJWKS(pubs)
	if err != nil {
		t.Fatal(err)
	}
	return ks, b
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeysImport(t *testing.T) {
	dir, src := filepath.Join(t.TempDir(), "keys"), t.TempDir()
	ks, set := agencyStack(t, "court-x", keys.EdDSA, keys.ES256, keys.ECDHES)
	file := writeFile(t, src, "court-x.jwks", set)

	code, out, errs := runCLI(t, "keys", "import", "--agency", "court-x", "--dir", dir, file)
	want := "added     court-x/hsm1 (EdDSA, use sig)\n" +
		"added     court-x/hsm2 (ES256, use sig)\n" +
		"added     court-x/hsm3 (ECDH-ES+A256KW, use enc)\n" +
		"  public:  " + keys.JWKSPath(dir, "court-x") + "\n" +
		pickUpLine(dir)
	if code != exitOK || out != want {
		t.Fatalf("keys import: %d\n%s%s", code, out, errs)
	}
	reg, err := keys.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reg.Agency("court-x")); got != 3 {
		t.Fatalf("%d keys installed", got)
	}
	if _, err := reg.EncryptionKey("court-x", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, jwks, _ := runCLI(t, "keys", "jwks", "--agency", "court-x", "--dir", dir)
	if code != exitOK || strings.TrimSpace(jwks) != strings.TrimSpace(string(set)) {
		t.Fatalf("published set differs from the imported one:\n%s", jwks)
	}

	// Again, from stdin: nothing changes.
	code, out, errs = runWithStdin(t, set, "keys", "import", "--agency", "court-x", "--dir", dir, "-")
	if code != exitOK || !strings.HasPrefix(out, "unchanged court-x/hsm1\nunchanged court-x/hsm2\nunchanged court-x/hsm3\n") || strings.Contains(out, "picks this up") {
		t.Fatalf("second import: %d %q %s", code, out, errs)
	}

	// The agency revokes hsm1 in its own stack and re-exports.
	revoked := ks[0].Public
	revoked.RevokedAt = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	b, _ := keys.MarshalJWKS([]keys.Public{revoked, ks[1].Public})
	code, out, errs = runCLI(t, "keys", "import", "--agency", "court-x", "--dir", dir, writeFile(t, src, "revoked.jwks", b))
	if code != exitOK || !strings.HasPrefix(out, "revoked   court-x/hsm1 at 2026-12-01T08:00:00Z\nunchanged court-x/hsm2\n") || !strings.HasSuffix(out, pickUpLine(dir)) {
		t.Fatalf("revoking import: %d %q %s", code, out, errs)
	}

	before, _ := os.ReadFile(keys.JWKSPath(dir, "court-x"))
	priv, _ := keys.MarshalPrivate(ks[1])
	reused, _ := keys.Generate("court-x", "hsm2", keys.ES256)
	reusedSet, _ := keys.MarshalJWKS([]keys.Public{reused.Public})
	_, foreign := agencyStack(t, "court-y", keys.EdDSA)
	for name, c := range map[string]struct {
		doc  []byte
		want []string
	}{
		"private key":    {[]byte(`{"keys":[` + string(priv) + `]}`), []string{`key 0 (kid "court-x/hsm2")`, `private member "d"`}},
		"other agency":   {foreign, []string{`key 0 (kid "court-y/hsm1")`, `not "court-x"`}},
		"reused kid":     {reusedSet, []string{"court-x/hsm2", "other key material"}},
		"empty set":      {[]byte(`{"keys":[]}`), []string{"no keys"}},
		"too large":      {bytes.Repeat([]byte(" "), keys.MaxImportSize+1), []string{"larger than 65536 bytes"}},
		"not a key file": {[]byte("hello"), []string{"not a JWKS"}},
	} {
		code, out, errs := runCLI(t, "keys", "import", "--agency", "court-x", "--dir", dir, writeFile(t, src, "bad.jwks", c.doc))
		if code != exitFailure || out != "" {
			t.Errorf("%s: exit %d, out %q", name, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: %q lacks %q", name, errs, w)
			}
		}
	}
	if after, _ := os.ReadFile(keys.JWKSPath(dir, "court-x")); !bytes.Equal(after, before) {
		t.Fatal("a refused import changed the installed set")
	}

	for _, args := range [][]string{
		{"keys", "import", "--dir", dir, file},
		{"keys", "import", "--agency", "court-x", "--dir", dir},
		{"keys", "import", "--agency", "court-x", "--dir", dir, file, file},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("certless %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
	if code, _, errs := runCLI(t, "keys", "import", "--agency", "court-x", "--dir", dir, filepath.Join(src, "missing")); code != exitFailure || !strings.Contains(errs, "missing") {
		t.Errorf("missing file: %d %s", code, errs)
	}
}

// runWithStdin runs the command line as run does, with stdin.
func runWithStdin(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&globals{stdout: &out, stderr: &errb})
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return exitFailure, out.String(), err.Error()
	}
	return exitOK, out.String(), errb.String()
}
