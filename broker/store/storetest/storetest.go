// Package storetest is the conformance suite every store.Store passes: the
// decision store's promises and those of its quota counter (store.Quotas).
//
// An implementation's test calls Run with a Harness that makes fresh, empty
// databases:
//
//	func TestSQLite(t *testing.T) {
//		storetest.Run(t, storetest.Harness{Fresh: func(t *testing.T) storetest.Opener {
//			dsn := filepath.Join(t.TempDir(), "decisions.db")
//			return func(opts store.Options) (store.Store, error) {
//				return store.Open(context.Background(), dsn, opts)
//			}
//		}})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/broker/store"
)

// Opener opens a Store on one database. Opening again after Close reaches
// the same database.
type Opener func(opts store.Options) (store.Store, error)

// Harness connects the suite to one implementation.
type Harness struct {
	// Fresh makes a new, empty database for one subtest.
	Fresh func(t *testing.T) Opener
	// Volatile marks a database that does not outlive its Store (SQLite
	// ":memory:"); the reopen checks are skipped.
	Volatile bool
}

// Run runs the suite, one subtest per promise of store.Store.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		f    func(*testing.T, Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"DuplicateDigestReturnsFirst", testDuplicateDigest},
		{"IDConflict", testIDConflict},
		{"ReplaysAlongside", testReplays},
		{"RejectionsWithoutID", testRejectionsWithoutID},
		{"BadInput", testBadInput},
		{"EveryOutcome", testEveryOutcome},
		{"ConcurrentGrouped", testConcurrentGrouped},
		{"ConcurrentDefaults", testConcurrentDefaults},
		{"ConflictsInOneBatch", testConflictsInOneBatch},
		{"CloseFlushes", testCloseFlushes},
		{"Reopen", testReopen},
		{"CancelWhileWaiting", testCancelWhileWaiting},
		{"Closed", testClosed},
		{"QuotaEachWindow", testQuotaEachWindow},
		{"QuotaAllOrNothing", testQuotaAllOrNothing},
		{"QuotaBeijingWindows", testQuotaBeijingWindows},
		{"QuotaUnlimited", testQuotaUnlimited},
		{"QuotaIndependentBudgets", testQuotaIndependentBudgets},
		{"QuotaConcurrent", testQuotaConcurrent},
		{"QuotaSaveAlongside", testQuotaSaveAlongside},
		{"QuotaBadInput", testQuotaBadInput},
		{"QuotaReopen", testQuotaReopen},
		{"QuotaClosed", testQuotaClosed},
		{"QuotaCancelled", testQuotaCancelled},
		{"Log", testLog},
		{"ByReceipt", testByReceipt},
		{"Status", testStatus},
		{"Rows", testRows},
		{"Browse", testBrowse},
		{"ConcurrentGets", testConcurrentGets},
	}
	for _, tc := range tests {
		if (tc.name == "Reopen" || tc.name == "QuotaReopen") && h.Volatile {
			continue // nothing outlives a volatile store
		}
		t.Run(tc.name, func(t *testing.T) { tc.f(t, h) })
	}
}

// never is a BatchWait long enough that only BatchSize or Close flushes.
const never = time.Hour

func open(t *testing.T, o Opener, opts store.Options) store.Store {
	t.Helper()
	s, err := o(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Decision returns a valid answered decision for agency and id whose digest
// is derived from them and salt.
func Decision(agency, id, salt string) store.Decision {
	sum := sha256.Sum256([]byte(agency + "\x00" + id + "\x00" + salt))
	return store.Decision{
		Digest:    "sha256:" + hex.EncodeToString(sum[:]),
		Agency:    agency,
		RequestID: id,
		QueryType: "criminal_record",
		Outcome:   store.Answered,
		Receipt:   []byte("receipt of " + id + "/" + salt + "\x00\xff\n"),
		DecidedAt: time.Date(2026, 11, 27, 8, 30, 15, 123456789, time.FixedZone("CST", 8*3600)),
		// The agreement the decision rests on, as its receipt cites it.
		AgreementID: agency + "/records", AgreementVersion: 2, AgreementDigest: agreementDigest(agency),
		// The receipt it was answered with: ids are per receipt.
		ReceiptID: "01R" + strings.ToUpper(hex.EncodeToString(sum[:]))[:23], ReceiptDigest: "sha256:" + hex.EncodeToString(sha256.New().Sum(sum[:]))[:64],
		AnswerFields: []string{"has_criminal_record", "as_of"},
		StatusIndex:  int64(sum[0]), SubjectKey: "hmac:" + hex.EncodeToString(sum[:8]),
		// How long it took, from the request's Kafka timestamp.
		LatencyMicros: 1000 + int64(sum[1]),
	}
}

func agreementDigest(agency string) string {
	sum := sha256.Sum256([]byte("agreement of " + agency))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// same reports whether got is want as stored: bytes exact, time in UTC to
// the microsecond.
func same(t *testing.T, what string, got, want store.Decision) {
	t.Helper()
	want.DecidedAt = want.DecidedAt.UTC().Truncate(time.Microsecond)
	if !bytes.Equal(got.Receipt, want.Receipt) {
		t.Errorf("%s: receipt %q, want %q", what, got.Receipt, want.Receipt)
	}
	if !got.DecidedAt.Equal(want.DecidedAt) || got.DecidedAt.Location() != time.UTC {
		t.Errorf("%s: decided at %v, want %v (UTC)", what, got.DecidedAt, want.DecidedAt)
	}
	if got.Digest != want.Digest || got.Agency != want.Agency || got.RequestID != want.RequestID ||
		got.QueryType != want.QueryType || got.Outcome != want.Outcome || got.Reason != want.Reason || got.Replay != want.Replay ||
		got.AgreementID != want.AgreementID || got.AgreementVersion != want.AgreementVersion || got.AgreementDigest != want.AgreementDigest ||
		got.ReceiptID != want.ReceiptID || got.ReceiptDigest != want.ReceiptDigest || !slices.Equal(got.AnswerFields, want.AnswerFields) ||
		got.StatusIndex != want.StatusIndex || got.SubjectKey != want.SubjectKey {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func save(t *testing.T, s store.Store, d store.Decision) store.Decision {
	t.Helper()
	got, err := s.Save(context.Background(), d)
	if err != nil {
		t.Fatalf("save %s/%s: %v", d.Agency, d.RequestID, err)
	}
	return got
}

func mustGet(t *testing.T, s store.Store, want store.Decision) {
	t.Helper()
	got, ok, err := s.Get(context.Background(), want.Digest)
	if err != nil || !ok {
		t.Fatalf("get %s: ok=%v err=%v", want.Digest, ok, err)
	}
	same(t, "get "+want.RequestID, got, want)
}

func mustCount(t *testing.T, s store.Store, want int) {
	t.Helper()
	n, err := s.Count(context.Background())
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != want {
		t.Fatalf("count %d, want %d", n, want)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	d := Decision("court-220102", "req-1", "a")
	d.Receipt = make([]byte, 4096)
	for i := range d.Receipt {
		d.Receipt[i] = byte(i * 7)
	}
	denied := Decision("court-220102", "req-2", "b")
	denied.Outcome, denied.Reason = store.Denied, "no_agreement"
	notFound := Decision("notary-220582", "req-1", "c")
	notFound.Outcome = store.NotFound
	for _, want := range []store.Decision{d, denied, notFound} {
		same(t, "save "+want.RequestID, save(t, s, want), want)
		mustGet(t, s, want)
		digest, ok, err := s.DigestByRequestID(ctx, want.Agency, want.RequestID)
		if err != nil || !ok || digest != want.Digest {
			t.Errorf("digest by id %s/%s = %q %v %v, want %s", want.Agency, want.RequestID, digest, ok, err, want.Digest)
		}
	}
	mustCount(t, s, 3)
	if _, ok, err := s.Get(ctx, Decision("x", "y", "z").Digest); ok || err != nil {
		t.Errorf("get unknown digest: ok=%v err=%v", ok, err)
	}
	if _, ok, err := s.DigestByRequestID(ctx, "court-220102", "req-9"); ok || err != nil {
		t.Errorf("digest by unknown id: ok=%v err=%v", ok, err)
	}
}

func testDuplicateDigest(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	first := Decision("court-220102", "req-1", "a")
	same(t, "first save", save(t, s, first), first)

	second := first
	second.Receipt = []byte("a different receipt, signed later")
	second.Outcome, second.Reason = store.Denied, "quota_exceeded"
	second.DecidedAt = first.DecidedAt.Add(time.Hour)
	same(t, "redelivered save", save(t, s, second), first)
	mustGet(t, s, first)
	mustCount(t, s, 1)
}

func testIDConflict(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	first := save(t, s, Decision("court-220102", "req-1", "a"))
	other := Decision("court-220102", "req-1", "b") // same id, other bytes
	_, err := s.Save(context.Background(), other)
	if !errors.Is(err, store.ErrIDConflict) {
		t.Fatalf("save same id, other digest: err %v, want ErrIDConflict", err)
	}
	var ce *store.ConflictError
	if !errors.As(err, &ce) || ce.Held != first.Digest || ce.Digest != other.Digest {
		t.Errorf("conflict error %#v, want held %s refused %s", ce, first.Digest, other.Digest)
	}
	if _, ok, _ := s.Get(context.Background(), other.Digest); ok {
		t.Error("the conflicting decision was stored")
	}
	// The id belongs to its agency: another agency may use it.
	save(t, s, Decision("notary-220582", "req-1", "b"))
	mustCount(t, s, 2)
}

func testReplays(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	replay := func(salt string) store.Decision {
		d := Decision("court-220102", "req-1", salt)
		d.Outcome, d.Reason, d.Replay = store.Rejected, "replayed_id", true
		return d
	}
	// A replay may even be stored before the original it refers to.
	early := replay("r0")
	same(t, "early replay", save(t, s, early), early)
	orig := save(t, s, Decision("court-220102", "req-1", "a"))
	for _, salt := range []string{"r1", "r2"} {
		d := replay(salt)
		same(t, "replay "+salt, save(t, s, d), d)
		mustGet(t, s, d)
	}
	// A redelivered replay gets its own stored rejection back.
	same(t, "redelivered replay", save(t, s, replay("r1")), replay("r1"))
	digest, ok, err := s.DigestByRequestID(ctx, "court-220102", "req-1")
	if err != nil || !ok || digest != orig.Digest {
		t.Errorf("digest by id = %q %v %v, want the original %s", digest, ok, err, orig.Digest)
	}
	mustCount(t, s, 4)
}

func testRejectionsWithoutID(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	for _, salt := range []string{"a", "b"} {
		d := Decision("court-220102", "", salt)
		d.QueryType, d.Outcome, d.Reason = "", store.Rejected, "schema_violation"
		same(t, "rejection without id", save(t, s, d), d)
	}
	if _, ok, err := s.DigestByRequestID(context.Background(), "court-220102", ""); ok || err != nil {
		t.Errorf("digest by empty id: ok=%v err=%v, want not found", ok, err)
	}
	mustCount(t, s, 2)
}

func testBadInput(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	good := Decision("court-220102", "req-1", "a")
	bad := map[string]func(*store.Decision){
		"empty digest":         func(d *store.Decision) { d.Digest = "" },
		"digest without alg":   func(d *store.Decision) { d.Digest = d.Digest[len("sha256:"):] },
		"upper-case digest":    func(d *store.Decision) { d.Digest = "sha256:" + strings.Repeat("AB", 32) },
		"short digest":         func(d *store.Decision) { d.Digest = d.Digest[:20] },
		"unknown outcome":      func(d *store.Decision) { d.Outcome = "maybe" },
		"empty outcome":        func(d *store.Decision) { d.Outcome = "" },
		"answered with reason": func(d *store.Decision) { d.Reason = "why" },
		"denied without reason": func(d *store.Decision) {
			d.Outcome = store.Denied
		},
		"unavailable without reason": func(d *store.Decision) {
			d.Outcome = store.Unavailable
		},
		"internal error without reason": func(d *store.Decision) {
			d.Outcome = store.InternalError
		},
		"agreement without digest": func(d *store.Decision) { d.AgreementDigest = "" },
		"agreement digest bad":     func(d *store.Decision) { d.AgreementDigest = "sha256:xyz" },
		"digest without agreement": func(d *store.Decision) { d.AgreementID = "" },
		"empty agency":             func(d *store.Decision) { d.Agency = "" },
		"answered without id":      func(d *store.Decision) { d.RequestID = "" },
		"replay not rejected":      func(d *store.Decision) { d.Replay = true },
		"NUL in id":                func(d *store.Decision) { d.RequestID = "a\x00b" },
		"invalid UTF-8":            func(d *store.Decision) { d.QueryType = "\xff" },
		"empty receipt":            func(d *store.Decision) { d.Receipt = nil },
		"zero time":                func(d *store.Decision) { d.DecidedAt = time.Time{} },
	}
	for name, mutate := range bad {
		d := good
		mutate(&d)
		_, err := s.Save(context.Background(), d)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	mustCount(t, s, 0)
	save(t, s, good)
}

// testEveryOutcome: each outcome a decision can have is stored and read
// back, and a rejection that is not a replay holds its request id.
func testEveryOutcome(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	for i, o := range []struct{ outcome, reason string }{
		{store.Answered, ""}, {store.NotFound, "no_record"}, {store.Denied, "query_not_allowed"},
		{store.Rejected, "invalid_query"}, {store.Unavailable, "retries_exhausted"}, {store.InternalError, "internal_error"},
	} {
		d := Decision("court-220102", fmt.Sprintf("req-%d", i), o.outcome)
		d.Outcome, d.Reason = o.outcome, o.reason
		save(t, s, d)
		got, ok, err := s.Get(ctx, d.Digest)
		if !ok || err != nil || got.Outcome != o.outcome || got.Reason != o.reason {
			t.Errorf("%s: got %+v %v %v", o.outcome, got, ok, err)
		}
		if held, ok, err := s.DigestByRequestID(ctx, d.Agency, d.RequestID); held != d.Digest || !ok || err != nil {
			t.Errorf("%s: id held by %q %v %v", o.outcome, held, ok, err)
		}
	}
	mustCount(t, s, 6)
}

// saveAll saves ds concurrently, one goroutine each, and returns the errors.
func saveAll(ctx context.Context, s store.Store, ds []store.Decision) ([]store.Decision, []error) {
	got := make([]store.Decision, len(ds))
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { got[i], errs[i] = s.Save(ctx, d) })
	}
	wg.Wait()
	return got, errs
}

func decisions(n int, salt string) []store.Decision {
	ds := make([]store.Decision, n)
	for i := range ds {
		ds[i] = Decision("court-220102", fmt.Sprintf("req-%03d", i), salt)
	}
	return ds
}

func testConcurrentGrouped(t *testing.T, h Harness) {
	// BatchWait never fires, so exactly 50/10 batches commit.
	s := open(t, h.Fresh(t), store.Options{BatchSize: 10, BatchWait: never})
	ds := decisions(50, "a")
	got, errs := saveAll(context.Background(), s, ds)
	for i := range ds {
		if errs[i] != nil {
			t.Fatalf("save %d: %v", i, errs[i])
		}
		same(t, "save", got[i], ds[i])
		mustGet(t, s, ds[i])
	}
	mustCount(t, s, 50)
	if st := s.Stats(); st.Batches != 5 || st.Rows != 50 || st.Queued != 0 {
		t.Errorf("stats %+v, want 5 batches of 10 rows, none queued", st)
	}
}

func testConcurrentDefaults(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ds := decisions(50, "a")
	_, errs := saveAll(context.Background(), s, ds)
	for i := range ds {
		if errs[i] != nil {
			t.Fatalf("save %d: %v", i, errs[i])
		}
	}
	mustCount(t, s, 50)
	st := s.Stats()
	// How many batches depends on the scheduler (a starved machine may
	// commit each save alone); grouping itself is ConcurrentGrouped's.
	t.Logf("50 concurrent saves, default options: %d batches", st.Batches)
	if st.Rows != 50 || st.Batches < 1 || st.Batches > st.Rows || st.Queued != 0 {
		t.Errorf("stats %+v: want 50 rows in at most 50 batches, none queued", st)
	}
}

func testConflictsInOneBatch(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{BatchSize: 5, BatchWait: never})
	stored := Decision("court-220102", "held", "a")
	_, errs := saveAll(context.Background(), s, append(decisions(4, "pad"), stored)) // one batch
	for _, err := range errs {
		if err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	before := s.Stats().Batches

	dup := stored
	dup.Receipt = []byte("second receipt")
	conflict := Decision("court-220102", "held", "b")
	fresh1, fresh2 := Decision("court-220102", "new-1", "a"), Decision("court-220102", "new-2", "a")
	twin := fresh1 // the same request twice in one batch
	var got []store.Decision
	got, errs = saveAll(context.Background(), s, []store.Decision{fresh1, dup, conflict, fresh2, twin})
	if n := s.Stats().Batches - before; n != 1 {
		t.Fatalf("%d batches, want the five saves in one", n)
	}
	for i, want := range []store.Decision{fresh1, stored, {}, fresh2, fresh1} {
		if i == 2 {
			if !errors.Is(errs[i], store.ErrIDConflict) {
				t.Errorf("conflicting row: err %v, want ErrIDConflict", errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("row %d failed with its batch: %v", i, errs[i])
			continue
		}
		same(t, fmt.Sprintf("row %d", i), got[i], want)
	}
	mustCount(t, s, 5+2)
}

// waitQueued waits until n Saves wait in s for their batch. Saves block until
// committed, so there is no event to wait on: poll the counter.
func waitQueued(t *testing.T, s store.Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Queued < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d saves queued after 30s, want %d", s.Stats().Queued, n)
		}
		runtime.Gosched()
	}
}

func testCloseFlushes(t *testing.T, h Harness) {
	o := h.Fresh(t)
	s := open(t, o, store.Options{BatchSize: 1000, BatchWait: never})
	ds := decisions(20, "a")
	var (
		got  []store.Decision
		errs []error
		done = make(chan struct{})
	)
	go func() {
		got, errs = saveAll(context.Background(), s, ds)
		close(done)
	}()
	waitQueued(t, s, int64(len(ds)))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	<-done
	for i := range ds {
		if errs[i] != nil {
			t.Fatalf("save %d, queued before Close: %v", i, errs[i])
		}
		same(t, "save", got[i], ds[i])
	}
	if st := s.Stats(); st.Batches != 1 || st.Rows != 20 {
		t.Errorf("stats %+v, want one batch of 20", st)
	}
	if h.Volatile {
		return
	}
	s = open(t, o, store.Options{})
	for _, d := range ds {
		mustGet(t, s, d)
	}
	mustCount(t, s, len(ds))
}

func testReopen(t *testing.T, h Harness) {
	o := h.Fresh(t)
	s := open(t, o, store.Options{})
	ds := decisions(10, "a")
	replay := Decision("court-220102", "req-000", "replayed")
	replay.Outcome, replay.Reason, replay.Replay = store.Rejected, "replayed_id", true
	ds = append(ds, replay)
	for _, d := range ds {
		save(t, s, d)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, o, store.Options{})
	for _, d := range ds {
		mustGet(t, s, d)
	}
	mustCount(t, s, len(ds))
	// The constraints survive too.
	if _, err := s.Save(context.Background(), Decision("court-220102", "req-000", "b")); !errors.Is(err, store.ErrIDConflict) {
		t.Errorf("after reopen, same id other digest: err %v, want ErrIDConflict", err)
	}
	same(t, "redelivered after reopen", save(t, s, ds[3]), ds[3])
}

func testCancelWhileWaiting(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{BatchSize: 2, BatchWait: never})

	// Already cancelled: refused before queueing, so never stored.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	early := Decision("court-220102", "early", "a")
	if _, err := s.Save(ctx, early); !errors.Is(err, context.Canceled) {
		t.Fatalf("save with cancelled ctx: err %v, want context.Canceled", err)
	}

	// Cancelled while waiting for its batch: the caller gets ctx.Err().
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	waiting := Decision("court-220102", "waiting", "a")
	errc := make(chan error, 1)
	go func() {
		_, err := s.Save(ctx, waiting)
		errc <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("save cancelled while waiting: err %v, want context.Canceled", err)
	}

	// An acknowledged save is never lost; the cancelled one may or may not
	// be stored, and saving it again settles it without a second answer.
	acked := Decision("court-220102", "acked", "a")
	same(t, "acknowledged save", save(t, s, acked), acked)
	mustGet(t, s, acked)
	// BatchSize 2: the retry commits together with one more save.
	got, errs := saveAll(context.Background(), s, []store.Decision{waiting, Decision("court-220102", "other", "a")})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("retried save: %v", errors.Join(errs...))
	}
	same(t, "retried save", got[0], waiting)
	if _, ok, err := s.Get(context.Background(), early.Digest); ok || err != nil {
		t.Errorf("save refused before queueing was stored: ok=%v err=%v", ok, err)
	}
}

func testClosed(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	save(t, s, Decision("court-220102", "req-1", "a"))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	ctx := context.Background()
	if _, err := s.Save(ctx, Decision("court-220102", "req-2", "a")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("save after close: err %v, want ErrClosed", err)
	}
	if _, _, err := s.Get(ctx, Decision("court-220102", "req-1", "a").Digest); !errors.Is(err, store.ErrClosed) {
		t.Errorf("get after close: err %v, want ErrClosed", err)
	}
	if _, err := s.Count(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("count after close: err %v, want ErrClosed", err)
	}
}

// testByReceipt: a decision is found by its receipt's id, with what the
// receipt carries; an unknown id and the empty id find nothing.
func testByReceipt(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t), store.Options{})
	a, b := Decision("court-changchun", "01A", "x"), Decision("edu-jian", "01B", "y")
	b.ReceiptID, b.ReceiptDigest, b.AnswerFields = "", "", nil // stored before receipts were named
	save(t, s, a)
	save(t, s, b)
	got, ok, err := s.ByReceipt(ctx, a.ReceiptID)
	if err != nil || !ok {
		t.Fatalf("by receipt %s: %v %v", a.ReceiptID, ok, err)
	}
	same(t, "by receipt", got, a)
	for _, id := range []string{"", "01RNOSUCHRECEIPT0000000000"} {
		if _, ok, err := s.ByReceipt(ctx, id); ok || err != nil {
			t.Errorf("by receipt %q: found %v, %v", id, ok, err)
		}
	}
}

// testStatus: status indexes are never handed out twice, also to two
// stores reserving at once; revocations are idempotent and read by range;
// decisions are found by subject key.
func testStatus(t *testing.T, h Harness) {
	ctx := context.Background()
	o := h.Fresh(t)
	a := open(t, o, store.Options{})
	b := a
	if !h.Volatile {
		b = open(t, o, store.Options{})
	}
	seen := map[int64]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range []store.Store{a, b} {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first, err := s.ReserveStatus(ctx, 100)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for i := first; i < first+100; i++ {
					if seen[i] {
						t.Errorf("status index %d handed out twice", i)
					}
					seen[i] = true
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) != 1600 {
		t.Fatalf("%d indexes reserved, want 1600", len(seen))
	}
	if _, err := a.ReserveStatus(ctx, 0); err == nil {
		t.Error("reserved 0 indexes")
	}

	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	r1 := store.Revocation{StatusIndex: 5, ReceiptID: "01R1", Agency: "court-changchun", Reason: "corrected", DisputeID: "01D1", At: at}
	r2 := store.Revocation{StatusIndex: 131072 + 3, ReceiptID: "01R2", Agency: "edu-jian", Reason: "corrected", DisputeID: "01D1", At: at}
	if err := a.Revoke(ctx, r1, r2); err != nil {
		t.Fatal(err)
	}
	again := r1
	again.Reason, again.At = "other", at.Add(time.Hour)
	if err := b.Revoke(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, err := a.Revocations(ctx, 0, 131072)
	if err != nil || len(got) != 1 || got[0].Reason != "corrected" || !got[0].At.Equal(at) || got[0].ReceiptID != "01R1" {
		t.Fatalf("list 0: %+v %v", got, err)
	}
	if got, err := a.Revocations(ctx, 131072, 2*131072); err != nil || len(got) != 1 || got[0].StatusIndex != r2.StatusIndex {
		t.Fatalf("list 1: %+v %v", got, err)
	}
	if err := a.Revoke(ctx, store.Revocation{StatusIndex: -1, Reason: "x", At: at}); err == nil {
		t.Error("revoked index -1")
	}

	d1, d2, other := Decision("court-changchun", "01S1", "s"), Decision("edu-jian", "01S2", "s"), Decision("court-changchun", "01S3", "t")
	d2.SubjectKey = d1.SubjectKey
	for _, d := range []store.Decision{d1, d2, other} {
		save(t, a, d)
	}
	ds, err := b.BySubject(ctx, d1.SubjectKey)
	if err != nil || len(ds) != 2 {
		t.Fatalf("by subject: %d %v", len(ds), err)
	}
	if ds, err := b.BySubject(ctx, ""); err != nil || len(ds) != 0 {
		t.Fatalf("the empty key found %d", len(ds))
	}
	if ds, err := b.Recent(ctx, "court-changchun", 10); err != nil || len(ds) != 2 {
		t.Fatalf("recent of the court: %d %v", len(ds), err)
	}
	if ds, err := b.Recent(ctx, "", 2); err != nil || len(ds) != 2 {
		t.Fatalf("recent, 2: %d %v", len(ds), err)
	}
}

// testRows: a report reads the decisions of a time window, in time order,
// with their latency and leaf, and counts them; outside the window none.
func testRows(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var want []store.Decision
	for i, at := range []time.Duration{3 * time.Hour, time.Hour, 25 * time.Hour, 2 * time.Hour} {
		d := Decision("court-220102", fmt.Sprintf("req-%d", i), "rows")
		d.DecidedAt, d.LatencyMicros = t0.Add(at), int64(1000*(i+1))
		if i == 1 {
			d.Outcome, d.Reason = store.Denied, "quota_exceeded"
		}
		save(t, s, d)
		if at < 24*time.Hour {
			want = append(want, d)
		}
	}
	var got []store.Row
	if err := s.Rows(ctx, t0, t0.Add(24*time.Hour), func(r store.Row) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d rows in the day, want 3", len(got))
	}
	sort.Slice(want, func(i, j int) bool { return want[i].DecidedAt.Before(want[j].DecidedAt) })
	for i, r := range got {
		w := want[i]
		if r.Agency != w.Agency || r.Outcome != w.Outcome || r.Reason != w.Reason || r.Query != w.QueryType || r.SubjectKey != w.SubjectKey ||
			!r.DecidedAt.Equal(w.DecidedAt) || r.LatencyMicros != w.LatencyMicros || r.LeafIndex < 0 {
			t.Errorf("row %d: %+v, want the decision of %s", i, r, w.DecidedAt)
		}
	}
	if n, err := s.CountBetween(ctx, t0, t0.Add(24*time.Hour)); n != 3 || err != nil {
		t.Fatalf("count of the day %d %v", n, err)
	}
	if n, _ := s.CountBetween(ctx, t0.Add(-time.Hour), t0); n != 0 {
		t.Fatalf("count before %d", n)
	}
}

// testBrowse: the console's pages of decisions, newest first, by agency,
// outcome, reason and period; pages do not overlap; bad pages are refused.
func testBrowse(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := range 7 {
		agency := "court-220102"
		if i%2 == 1 {
			agency = "edu-220802"
		}
		d := Decision(agency, fmt.Sprintf("browse-%d", i), "browse")
		d.DecidedAt = t0.Add(time.Duration(i) * time.Hour)
		if i == 2 || i == 5 {
			d.Outcome, d.Reason = store.Denied, "quota_exceeded"
		}
		save(t, s, d)
	}
	ids := func(f store.BrowseFilter) []string {
		t.Helper()
		ds, err := s.Browse(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.RequestID)
		}
		return out
	}
	if got := strings.Join(ids(store.BrowseFilter{Limit: 3}), " "); got != "browse-6 browse-5 browse-4" {
		t.Fatalf("first page %q", got)
	}
	if got := strings.Join(ids(store.BrowseFilter{Limit: 3, Offset: 3}), " "); got != "browse-3 browse-2 browse-1" {
		t.Fatalf("second page %q", got)
	}
	if got := strings.Join(ids(store.BrowseFilter{Limit: 10, Agency: "edu-220802"}), " "); got != "browse-5 browse-3 browse-1" {
		t.Fatalf("by agency %q", got)
	}
	if got := strings.Join(ids(store.BrowseFilter{Limit: 10, Outcome: store.Denied, Reason: "quota_exceeded"}), " "); got != "browse-5 browse-2" {
		t.Fatalf("by outcome and reason %q", got)
	}
	if got := strings.Join(ids(store.BrowseFilter{Limit: 10, From: t0.Add(2 * time.Hour), To: t0.Add(4 * time.Hour)}), " "); got != "browse-3 browse-2" {
		t.Fatalf("by period %q", got)
	}
	for _, f := range []store.BrowseFilter{{}, {Limit: store.MaxBrowse + 1}, {Limit: 1, Offset: -1}} {
		if _, err := s.Browse(ctx, f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("page %+v: %v, want ErrInvalid", f, err)
		}
	}
}

// testConcurrentGets: many Gets at once, of stored and unknown digests
// (some twice), each get its own answer, whether or not they share a
// query; after Close, Get fails.
func testConcurrentGets(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	ds := decisions(120, "gets")
	if _, errs := saveAll(ctx, s, ds); errs[0] != nil {
		t.Fatal(errs[0])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 600 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := ds[i%len(ds)]
			digest := want.Digest
			if i%3 == 0 {
				digest = "sha256:" + strings.Repeat(fmt.Sprintf("%x", i%16), 64) // nobody's
			}
			got, found, err := s.Get(ctx, digest)
			switch {
			case err != nil:
				errs <- err
			case i%3 == 0 && found:
				errs <- fmt.Errorf("unknown digest %s found", digest)
			case i%3 != 0 && (!found || got.Digest != want.Digest || got.RequestID != want.RequestID || got.LeafIndex < 0):
				errs <- fmt.Errorf("get %s: %v %+v", want.RequestID, found, got.RequestID)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := s.Get(ctx, ds[0].Digest); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
}
