package testenv

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Witness is the real transparency-log witness (litewitness, started by
// scripts/witness.sh): its URL, its cosignature verifier key, and Register,
// which tells it a log's origin and Ed25519 note verifier key.
type Witness struct {
	URL, VKey string
	ctl, db   string
}

// RealWitness returns the real witness, or skips t (fails it under CI)
// when scripts/witness.sh env was not evaluated.
func RealWitness(t testing.TB) Witness {
	t.Helper()
	w := Witness{URL: os.Getenv("CERTLESS_TEST_WITNESS_URL"), VKey: os.Getenv("CERTLESS_TEST_WITNESS_VKEY"),
		ctl: os.Getenv("CERTLESS_TEST_WITNESSCTL"), db: os.Getenv("CERTLESS_TEST_WITNESS_DB")}
	if w.URL == "" || w.VKey == "" || w.ctl == "" || w.db == "" {
		Require(t, "the litewitness witness", "CERTLESS_TEST_WITNESS_URL, _VKEY, CERTLESS_TEST_WITNESSCTL or CERTLESS_TEST_WITNESS_DB is not set")
	}
	// Logged so `go test -v` output shows which tests used the real witness.
	t.Logf("real litewitness at %s", w.URL)
	return w
}

// Register adds the log (origin, note verifier key) to the witness's
// database with witnessctl; litewitness picks it up without a restart.
func (w Witness) Register(t testing.TB, origin, logKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range [][]string{
		{w.ctl, "add-log", "-db", w.db, "-origin", origin},
		{w.ctl, "add-key", "-db", w.db, "-origin", origin, "-key", logKey},
	} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("register log %s with the witness: %v: %v\n%s", origin, c, err, out)
		}
	}
}
