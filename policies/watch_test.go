package policies

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certless/certless/keys"
)

// writeSigned writes doc as name in dir, co-signed by both parties.
func (w *world) writeSigned(dir, name, doc string) {
	w.t.Helper()
	a, err := Parse([]byte(doc))
	if err != nil {
		w.t.Fatal(err)
	}
	sigs := w.cosign([]byte(doc), signedAt, a.Parties.Requester, a.Parties.Provider)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+SignaturesSuffix), sigs, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

var courtReq = Request{Agency: "court-changchun", Query: "identity", Purpose: "litigation", CaseRef: "C1", SubjectRegion: "220102"}

func TestWatcherKeepsLastGoodOnTamper(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	w.writeSigned(dir, "court.yaml", sampleDoc)
	edu := strings.NewReplacer("court-changchun/criminal-records", "edu-jian/households", "requester: court-changchun", "requester: edu-jian").Replace(sampleDoc)
	w.writeSigned(dir, "edu.yaml", edu)

	wt, res := NewWatcher(dir, w.reg)
	if len(res.Problems) != 0 || res.Err != nil || wt.Set().Len() != 2 {
		t.Fatalf("start: %+v", res)
	}
	good := wt.Set()

	// One byte of the court's agreement changes after signing.
	tampered := strings.Replace(sampleDoc, "per_day: 1000", "per_day: 9000", 1)
	if err := os.WriteFile(filepath.Join(dir, "court.yaml"), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	res, changed := wt.poll()
	if !changed || len(res.Problems) != 1 || res.Problems[0].Reason != ReasonSignatureInvalid || !res.Problems[0].Kept {
		t.Fatalf("tamper: %+v", res)
	}
	s := wt.Set()
	if s.Len() != 2 || s.Digest() != good.Digest() {
		t.Fatalf("the last good version was not kept: %d agreements", s.Len())
	}
	d, err := s.Authorise(context.Background(), courtReq, t0, allowAll{})
	if err != nil || !d.Allowed {
		t.Fatalf("court denied on the last good set: %+v", d)
	}
	// Nothing changed: no reload, no report.
	if _, changed := wt.poll(); changed {
		t.Fatal("reloaded without a change")
	}
	// A file removed is gone.
	_ = os.Remove(filepath.Join(dir, "edu.yaml"))
	_ = os.Remove(filepath.Join(dir, "edu.yaml"+SignaturesSuffix))
	if res, _ := wt.poll(); wt.Set().Len() != 1 {
		t.Fatalf("after removal: %+v", res)
	}
	// A missing folder keeps the set.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if res, changed := wt.poll(); !changed || res.Err == nil || wt.Set().Len() != 1 {
		t.Fatalf("missing folder: %+v", res)
	}
	if _, changed := wt.poll(); changed {
		t.Fatal("the folder error was reported twice")
	}
}

// TestWatcherNoHalfLoadedSet: readers deciding while the folder flips
// between two complete sets only ever see one of them.
func TestWatcherNoHalfLoadedSet(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	const n = 12
	names := make([]string, n)
	for i := range names {
		names[i] = "a" + itoa(i) + ".yaml"
	}
	write := func(version int) {
		for i, name := range names {
			doc := strings.NewReplacer("court-changchun/criminal-records", "court-changchun/a"+itoa(i), "version: 1", "version: "+itoa(version)).Replace(sampleDoc)
			w.writeSigned(dir, name, doc)
		}
	}
	write(1)
	wt, _ := NewWatcher(dir, w.reg)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				s := wt.Set()
				infos := s.Agreements()
				if len(infos) != n {
					bad.Store("a set of " + itoa(len(infos)))
					return
				}
				v := infos[0].Ref.Version
				for _, in := range infos {
					if in.Ref.Version != v {
						bad.Store("versions mixed in one set")
						return
					}
				}
				if d, err := s.Authorise(context.Background(), courtReq, t0, allowAll{}); err != nil || !d.Allowed {
					bad.Store("denied: " + d.Reason)
					return
				}
			}
		}()
	}
	for round := 0; round < 6; round++ {
		// Write every file to the other version, then reload once: the
		// folder is complete whenever the watcher reads it.
		write(2 + round%2)
		if res := wt.Reload(); len(res.Problems) != 0 {
			t.Errorf("round %d: %v", round, res.Problems)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

type allowAll struct{}

func (allowAll) Take(context.Context, string, Ref, Quotas, time.Time) (bool, error) {
	return true, nil
}

func TestWatcherRunReports(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	wt, _ := NewWatcher(dir, w.reg)
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan ReloadResult, 16)
	done := make(chan struct{})
	go func() { wt.Run(ctx, time.Millisecond, func(r ReloadResult) { reports <- r }); close(done) }()
	w.writeSigned(dir, "court.yaml", sampleDoc)
	deadline := time.After(30 * time.Second)
	for wt.Set().Len() != 1 {
		select {
		case <-reports:
		case <-deadline:
			t.Fatal("no reload reported")
		}
	}
	cancel()
	<-done
}

// TestWatcherDropsAgreementWhenKeyRevoked: a file whose bytes went bad
// keeps its last good version, but a signing key revoked before it signed
// withdraws the agreement at the next reload, as a fresh Load would.
func TestWatcherDropsAgreementWhenKeyRevoked(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	w.writeSigned(dir, "court.yaml", sampleDoc)
	wt, res := NewWatcher(dir, w.reg)
	if len(res.Problems) != 0 || wt.Set().Len() != 1 {
		t.Fatalf("start: %+v", res)
	}
	if err := keys.Revoke(w.dir, w.keys["police-jilin"].KID(), signedAt.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.reg.Reload(w.dir); err != nil {
		t.Fatal(err)
	}
	res = wt.Reload()
	if len(res.Problems) != 1 || res.Problems[0].Reason != ReasonKeyRevoked || res.Problems[0].Kept {
		t.Fatalf("after the revocation: %+v", res.Problems)
	}
	if d, _ := wt.Set().Authorise(context.Background(), courtReq, t0, allowAll{}); d.Allowed || d.Reason != DenyNoAgreement {
		t.Fatalf("an agreement signed with a revoked key still decides: %+v", d)
	}
}

// TestWatcherKeepsStatementsOnceSeen: deleting the status file does not
// undo a termination (nor a suspension) the broker has seen.
func TestWatcherKeepsStatementsOnceSeen(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	w.writeSigned(dir, "court.yaml", sampleDoc)
	wt, _ := NewWatcher(dir, w.reg)
	a, err := Parse([]byte(sampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	st, err := SignStatement([]byte(sampleDoc), a, StatusTerminated, w.keys["police-jilin"], signedAt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	status := filepath.Join(dir, "court.yaml"+StatusSuffix)
	if err := os.WriteFile(status, append(st, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := wt.Reload(); len(res.Problems) != 0 {
		t.Fatalf("termination: %+v", res.Problems)
	}
	denied := func(what string) {
		t.Helper()
		d, err := wt.Set().Authorise(context.Background(), courtReq, t0.Add(2*time.Hour), allowAll{})
		if err != nil || d.Allowed || d.Reason != DenyNotInForce || d.Detail != DetailTerminated {
			t.Fatalf("%s: %+v %v, want agreement_not_in_force/terminated", what, d, err)
		}
	}
	denied("terminated")
	if err := os.Remove(status); err != nil {
		t.Fatal(err)
	}
	res := wt.Reload()
	if len(res.Problems) != 1 || res.Problems[0].Reason != ReasonStatementInvalid || !res.Problems[0].Kept {
		t.Fatalf("status file deleted: %+v", res.Problems)
	}
	denied("after the status file was deleted")
}

// TestLoadForRefusesNonPoliceProvider: two agencies co-signing cannot grant
// each other the police's records, nor a data owner be a requester.
func TestLoadForRefusesNonPoliceProvider(t *testing.T) {
	w := defaultWorld(t)
	dir := t.TempDir()
	w.writeSigned(dir, "court.yaml", sampleDoc)
	collusion := strings.NewReplacer("court-changchun/criminal-records", "court-changchun/from-the-notary", "provider: police-jilin", "provider: notary-dunhua").Replace(sampleDoc)
	w.writeSigned(dir, "collusion.yaml", collusion)
	owner := strings.NewReplacer("court-changchun/criminal-records", "police-jilin/self", "requester: court-changchun", "requester: police-jilin", "provider: police-jilin", "provider: court-changchun").Replace(sampleDoc)
	w.writeSigned(dir, "owner.yaml", owner)

	if set, problems := Load(dir, w.reg); set.Len() != 3 || len(problems) != 0 {
		t.Fatalf("without a list of data owners every well-signed file loads: %d, %v", set.Len(), problems)
	}
	set, problems := LoadFor(dir, w.reg, []string{"police-jilin"})
	if set.Len() != 1 || len(problems) != 2 {
		t.Fatalf("LoadFor: %d agreements, problems %v", set.Len(), problems)
	}
	for _, p := range problems {
		if p.Reason != ReasonWrongParty {
			t.Errorf("%s: %s, want wrong_party", p.File, p.Reason)
		}
	}
	wt, res := NewWatcherFor(dir, w.reg, []string{"police-jilin"})
	if wt.Set().Len() != 1 || len(res.Problems) != 2 {
		t.Fatalf("watcher: %d, %v", wt.Set().Len(), res.Problems)
	}
}
