package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestRealKafkaLogFailsClosed: with the log key missing no checkpoint can
// be signed. /readyz says so at once; receipts still go out within the
// tolerance (their leaves are durable); past it the broker stops
// answering — the request is held, not decided, not lost — and once the
// key is back the held request is answered and checkpointed.
func TestRealKafkaLogFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	cfg.Transparency.KeyFile = filepath.Join(t.TempDir(), "not-yet", "log.key")
	clock := &testClock{now: time.Now()}
	r := newLiveRig(ctx, t, cfg, serviceOptions{checkpointClock: clock.Now, checkpointInterval: time.Hour})
	svc := r.svc
	base := "http://" + svc.httpAddr()

	if got := r.askIdentity(ctx); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("before any checkpoint round: %s/%s", got.Decision, got.Reason)
	}
	if err := svc.checkpointer.Round(ctx); err == nil {
		t.Fatal("a checkpoint was signed without a log key")
	}
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "transparency_log") {
		t.Fatalf("/readyz with the log failing: %d %s", code, body)
	}
	if got := r.askIdentity(ctx); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("within the tolerance: %s/%s", got.Decision, got.Reason)
	}

	// Past the tolerance: a request is held back, never decided.
	clock.advance(cfg.Transparency.Tolerance.D() + 31*time.Second)
	w := watchReceipts(ctx, t, cfg, svc, "court-changchun")
	raw, err := envelope.Sign(signingKey(t, cfg, "court-changchun"), r.payload(time.Now().UTC().Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	digest := envelope.DigestOf(raw)
	if err := r.c.Send(ctx, client.Signed{Digest: digest, Bytes: raw}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the broker holding the request back", time.Minute, func() bool {
		return metricSum(ctx, t, base+"/metrics", "certless_log_refusals_total") >= 2
	})
	if _, ok, err := svc.store.Get(ctx, digest); ok || err != nil {
		t.Fatalf("a request was decided outside the log: %v %v", ok, err)
	}

	// The key arrives: the next round checkpoints, the held request is
	// answered, and its leaf is under a checkpoint.
	if err := ensureLogKey(cfg, r.svc.log); err != nil {
		t.Fatal(err)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatalf("round with the key back: %v", err)
	}
	got, err := w.Await(ctx, map[string]string{digest: ""})
	if err != nil || got[digest] == nil || got[digest].Decision != schemas.DecisionAnswered {
		t.Fatalf("held request after recovery: %v %v", got, err)
	}
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %s", code, body)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := receiptBundle(ctx, svc.store, digest, "", 0); err != nil {
		t.Fatalf("the held request's receipt is not provable: %v", err)
	}
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricSum is the sum of every series of the named metric at url.
func metricSum(ctx context.Context, t *testing.T, url, name string) float64 {
	t.Helper()
	fam := scrapeFamilies(ctx, t, url)[name]
	if fam == nil {
		return 0
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}
