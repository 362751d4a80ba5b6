package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// upstreamMode is how the fake Dunhua record service behaves.
type upstreamMode int32

const (
	upstreamHealthy upstreamMode = iota
	upstreamSlow                 // answers nothing until the caller gives up
	upstream500                  // 500 with a protocol error body
	upstreamGarbage              // 200 with a body that is not JSON, or is cut short
	upstreamHangUp               // closes the connection, before or in the middle of the response
)

var upstreamModeNames = map[upstreamMode]string{
	upstreamHealthy: "healthy", upstreamSlow: "times out", upstream500: "answers 500",
	upstreamGarbage: "answers garbage", upstreamHangUp: "closes the connection",
}

// flakyUpstream is Dunhua's HTTP record service, switched by the test
// between answering and failing; it counts the answer calls it gets.
type flakyUpstream struct {
	srv  *httptest.Server
	mode atomic.Int32
	hits atomic.Int64
}

func newFlakyUpstream(t *testing.T) *flakyUpstream {
	u := &flakyUpstream{}
	quit := make(chan struct{})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != httpsource.Path {
			http.NotFound(w, r)
			return
		}
		n := u.hits.Add(1)
		switch upstreamMode(u.mode.Load()) {
		case upstreamSlow:
			select { // until the client's attempt timeout closes the connection
			case <-r.Context().Done():
			case <-quit:
			}
		case upstream500:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"record database unreachable"}`))
		case upstreamGarbage:
			if n%2 == 0 {
				_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
			} else {
				_, _ = w.Write([]byte(`{"found":false,"fields":{"as_of":"2026-`))
			}
		case upstreamHangUp:
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			if n%2 == 0 { // a status line and half a body, then nothing
				_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"found\":true,\"fields\":{")
				_ = buf.Flush()
			}
			_ = conn.Close()
		default:
			var q adapters.Query
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			now := time.Now().UTC().Truncate(time.Second)
			fmt.Fprintf(w, `{"found":true,"fields":{"as_of":%q,"id_name_match":true,"status":"active"},"as_of":%q,"valid_until":%q,"source":"dunhua"}`,
				now.Format(time.RFC3339), now.Format(time.RFC3339), now.Add(24*time.Hour).Format(time.RFC3339))
		}
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() { close(quit) }) // before Close, which waits for the handlers
	return u
}

func (u *flakyUpstream) set(m upstreamMode) { u.mode.Store(int32(m)) }

// TestRealKafkaSourceFailures: on the real Kafka and PostgreSQL, Dunhua's
// HTTP record source times out, answers 500, answers garbage and hangs up,
// each in turn, with a recovery after each. Throughout, every request gets
// exactly one signed receipt: during a failure `unavailable` with the
// configured retry hint (never not_found, never an answer, never a
// rejection); the circuit opens and spares the upstream most calls; and
// once the upstream answers again, so does the broker — without a restart
// — and the circuit closes.
func TestRealKafkaSourceFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		source    = "dunhua-http"
		tripAfter = 3
		openFor   = time.Second
		perPhase  = 12
	)
	up := newFlakyUpstream(t)
	cfg, _ := realConfigAndRecords(ctx, t)
	cfg.Limits.InFlight = 8
	cfg.Limits.RetryAttempts = 3
	cfg.Limits.RetryWindow = config.Duration(2 * time.Second)
	cfg.Limits.RetryAfter = config.Duration(45 * time.Second)
	cfg.Adapters = append(cfg.Adapters, config.Adapter{
		Name: source, Type: "http", Level: "county", Region: "222403",
		Options: map[string]any{"url": up.srv.URL, "attempts": 1, "trip_after": tripAfter, "timeout": "300ms", "open_for": openFor.String()},
	})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	metrics := "http://" + svc.httpAddr() + "/metrics"
	w := watchReceipts(ctx, t, cfg, svc, "notary-dunhua")
	c, err := newAgencyClient(ctx, cfg, "notary-dunhua", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka = svc.kafka
	t.Cleanup(func() { c.Close() })
	signer, err := keys.SigningKey(cfg.KeysDir, "notary-dunhua", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	var (
		sent        []string // request digests
		lost        int
		conflicting int
		seq         int
	)
	// ask sends n identity requests about distinct Dunhua residents and
	// returns their receipts; a request without one within the deadline
	// is counted lost.
	ask := func(n int) map[string]*client.Receipt {
		t.Helper()
		now := time.Now().UTC().Truncate(time.Second)
		want := map[string]string{}
		var reqs []client.Signed
		for range n {
			seq++
			subject := schemas.Subject{IDNumber: residentid.Make("222403", time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, seq), seq%1000), Name: "敦化居民"}
			body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: subject})
			raw, err := envelope.Sign(signer, envelope.Payload{
				Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: "notary-dunhua", IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
				Purpose: envelope.Purpose{Basis: "notarisation", CaseRef: "SF-" + strconv.Itoa(seq)}, Body: body,
			})
			if err != nil {
				t.Fatal(err)
			}
			s := client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw}
			reqs = append(reqs, s)
			want[s.Digest] = ""
			sent = append(sent, s.Digest)
		}
		if err := c.Send(ctx, reqs...); err != nil {
			t.Fatal(err)
		}
		awaitCtx, stop := context.WithTimeout(ctx, 30*time.Second)
		defer stop()
		got, err := w.Await(awaitCtx, want)
		if err != nil {
			t.Errorf("%d of %d requests without a receipt: %v", len(want)-len(got), len(want), err)
			lost += len(want) - len(got)
		}
		return got
	}
	upstreamCalls := func() (hits int64, calls float64) {
		return up.hits.Load(), counterSum(scrapeFamilies(ctx, t, metrics), "certless_source_answers_total", "source", source)
	}
	// circuit waits until the source's circuit gauge reads want. Only
	// HTTP sources have a circuit, and Dunhua's is the only one here.
	circuit := func(phase string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := metricSum(ctx, t, metrics, "certless_source_circuit_open")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: certless_source_circuit_open is %v, want %v", phase, got, want)
			}
			waitABit(ctx, 50*time.Millisecond)
		}
	}
	answered := func(phase string, rs map[string]*client.Receipt) {
		t.Helper()
		for _, r := range rs {
			a, err := r.Answer()
			if r.Decision != schemas.DecisionAnswered || err != nil || a["id_name_match"] != true {
				t.Errorf("%s: %s/%s %q answer %v, want answered with the upstream's id_name_match", phase, r.Decision, r.Reason, r.Detail, a)
			}
		}
	}

	// Healthy: answered, through the HTTP source.
	up.set(upstreamHealthy)
	hits0, _ := upstreamCalls()
	answered("healthy", ask(perPhase))
	if hits, _ := upstreamCalls(); hits-hits0 < perPhase {
		t.Fatalf("healthy: the upstream saw %d calls for %d requests: the requests did not reach it", hits-hits0, perPhase)
	}

	counts := map[string]int{}
	for _, mode := range []upstreamMode{upstreamSlow, upstream500, upstreamGarbage, upstreamHangUp} {
		phase := upstreamModeNames[mode]
		up.set(mode)
		hits0, calls0 := upstreamCalls()
		start := time.Now()
		for _, r := range ask(perPhase) {
			counts[phase+" → "+r.Decision+"/"+r.Reason]++
			switch {
			case r.Decision == schemas.DecisionAnswered || r.Decision == schemas.DecisionNotFound:
				conflicting++
				t.Errorf("%s: %s/%s during the outage", phase, r.Decision, r.Reason)
			case r.Decision != schemas.DecisionUnavailable || r.Reason != broker.ReasonRetriesExhausted:
				t.Errorf("%s: %s/%s %q, want unavailable/%s", phase, r.Decision, r.Reason, r.Detail, broker.ReasonRetriesExhausted)
			case r.RetryAfter != 45:
				t.Errorf("%s: unavailable with retry_after %d, want 45", phase, r.RetryAfter)
			}
		}
		took := time.Since(start)
		circuit(phase, 1)
		hits1, calls1 := upstreamCalls()
		hits, calls := hits1-hits0, calls1-calls0
		// Without a circuit every call reaches the upstream (one attempt
		// each). With it: the calls until it trips (those already under
		// way included), then one probe per open period.
		bound := int64(tripAfter + cfg.Limits.InFlight + int(took/openFor) + 1)
		t.Logf("%s: %d requests in %v, %v source calls, %d reached the upstream (bound %d)", phase, perPhase, took.Round(time.Millisecond), calls, hits, bound)
		if hits < tripAfter {
			t.Errorf("%s: only %d calls reached the upstream; the circuit cannot have opened on this failure", phase, hits)
		}
		if float64(hits) >= calls || hits > bound {
			t.Errorf("%s: %d of %v source calls reached the upstream (bound %d): the circuit did not spare it", phase, hits, calls, bound)
		}

		// Recovery: once the open period is over the next call probes the
		// upstream, the circuit closes and answers resume.
		up.set(upstreamHealthy)
		recovered := time.Now()
		for probes := 0; ; probes++ {
			r := ask(1)[sent[len(sent)-1]]
			if r != nil && r.Decision == schemas.DecisionAnswered {
				break
			}
			if r != nil && r.Decision != schemas.DecisionUnavailable {
				conflicting++
				t.Errorf("%s, recovering: %s/%s %q", phase, r.Decision, r.Reason, r.Detail)
			}
			if time.Since(recovered) > 10*openFor {
				t.Fatalf("%s: no answer %v after the upstream recovered (%d requests)", phase, time.Since(recovered), probes+1)
			}
		}
		answered(phase+", recovered", ask(perPhase))
		circuit(phase+", recovered", 0)
		t.Logf("%s: answers resumed %v after the upstream recovered", phase, time.Since(recovered).Round(time.Millisecond))
	}
	t.Logf("outcomes during the outages: %v", counts)

	// Exactly one distinct receipt per request, read back from the topic.
	all := map[string][][]byte{}
	for _, m := range readTopic(ctx, t, svc.kafka, svc.topics.Receipts("notary-dunhua")) {
		for _, h := range m.Headers {
			if h.Key == "certless-request-digest" {
				addDistinct(all, string(h.Value), m.Value)
			}
		}
	}
	for _, d := range sent {
		if len(all[d]) > 1 {
			conflicting++
			t.Errorf("request %s has %d different receipts", d, len(all[d]))
		}
	}
	line := fmt.Sprintf("fault record-source-failures: requests %d, lost %d, conflicting %d", len(sent), lost, conflicting)
	t.Log(line)
	if lost != 0 || conflicting != 0 {
		t.Fatal(line)
	}
}
