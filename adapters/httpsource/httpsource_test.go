package httpsource_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/adaptertest"
	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/fault"
)

var fixtures = adaptertest.Fixtures{Seed: 5, Persons: 2500}

func client(t *testing.T, url string, opt httpsource.Options) *httpsource.Client {
	t.Helper()
	c, err := httpsource.New(url, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConformanceOverSQLite runs the suite through a client talking to the
// handler in front of a seeded SQLite source: the whole dev path.
func TestConformanceOverSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	ctx := context.Background()
	if err := sqlsource.Seed(ctx, path, fixtures.Persons, fixtures.Seed, nil); err != nil {
		t.Fatal(err)
	}
	src, err := sqlsource.Open(ctx, path, sqlsource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	srv := httptest.NewServer(httpsource.Handler(src, httpsource.HandlerOptions{}))
	defer srv.Close()
	adaptertest.Run(t, func(t *testing.T) adapters.Source {
		return client(t, srv.URL, httpsource.Options{Name: "upstream"})
	}, fixtures)
}

// memory is a small in-memory upstream for the failure tests.
func memory() (adapters.Source, adapters.Query) {
	ds := records.Generate(1, 50)
	p := ds.Persons[0]
	return records.NewSource("memory", records.NewMemory(ds), nil),
		adapters.Query{Type: adapters.QueryIdentity, Subject: adapters.Subject{IDNumber: p.IDNumber, Name: p.Name}}
}

// counting wraps h and counts requests; fail decides, per request number
// (1-based), whether to answer with a status instead of h.
func counting(h http.Handler, fail func(n int64, w http.ResponseWriter) bool) (http.Handler, *atomic.Int64) {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fail(n.Add(1), w) {
			h.ServeHTTP(w, r)
		}
	}), &n
}

func fast(opt httpsource.Options) httpsource.Options {
	opt.BackoffBase, opt.BackoffMax = time.Millisecond, 2*time.Millisecond
	return opt
}

func TestSlowUpstreamTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	_, q := memory()
	c := client(t, srv.URL, fast(httpsource.Options{AttemptTimeout: 50 * time.Millisecond, MaxAttempts: 2}))
	start := time.Now()
	_, err := c.Answer(context.Background(), q)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, adapters.ErrUnavailable) {
		t.Fatalf("err = %v, want a deadline wrapped as unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v; the attempt timeout did not bound the call", d)
	}
}

func TestRetriesServerErrorsThenSucceeds(t *testing.T) {
	src, q := memory()
	h, n := counting(httpsource.Handler(src, httpsource.HandlerOptions{}), func(n int64, w http.ResponseWriter) bool {
		if n <= 2 {
			w.WriteHeader([]int{http.StatusServiceUnavailable, http.StatusBadGateway}[n-1])
			return true
		}
		return false
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	a, err := client(t, srv.URL, fast(httpsource.Options{MaxAttempts: 3})).Answer(context.Background(), q)
	if err != nil || !a.Found {
		t.Fatalf("Answer = %+v, %v", a, err)
	}
	if n.Load() != 3 {
		t.Errorf("%d requests, want 3", n.Load())
	}
}

// TestGarbledAnswersAreRetriedAndTripTheBreaker: a 200 whose body is not
// well-formed JSON is the upstream failing, not the query: it is retried
// (the next, valid answer is returned as it is), and garbage alone opens
// the circuit.
func TestGarbledAnswersAreRetriedAndTripTheBreaker(t *testing.T) {
	src, q := memory()
	garbage := []string{"<html>502 Bad Gateway</html>", `{"found":true,"fields":{"as_of":"2026-01-01T00:00:00Z","extra":`}
	h, n := counting(httpsource.Handler(src, httpsource.HandlerOptions{}), func(n int64, w http.ResponseWriter) bool {
		if n <= 2 {
			_, _ = w.Write([]byte(garbage[n-1]))
			return true
		}
		return false
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	want, err := src.Answer(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client(t, srv.URL, fast(httpsource.Options{MaxAttempts: 3, Name: want.Source})).Answer(context.Background(), q)
	if err != nil {
		t.Fatalf("Answer after two garbled attempts: %v", err)
	}
	if n.Load() != 3 {
		t.Errorf("%d requests, want 3", n.Load())
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("answer after garbled attempts\n got %s\nwant %s", gb, wb)
	}

	// Only garbage: the attempts are spent, unavailable, and the circuit
	// opens; the next call does not reach the upstream.
	junk, hits := counting(http.NotFoundHandler(), func(_ int64, w http.ResponseWriter) bool {
		_, _ = w.Write([]byte("not json"))
		return true
	})
	srv2 := httptest.NewServer(junk)
	defer srv2.Close()
	var opened atomic.Bool
	c := client(t, srv2.URL, fast(httpsource.Options{MaxAttempts: 2, TripAfter: 2, OpenFor: time.Hour,
		OnStateChange: func(_, to string) { opened.Store(to == "open") }}))
	if _, err := c.Answer(context.Background(), q); !errors.Is(err, adapters.ErrUnavailable) || fault.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient ErrUnavailable", err)
	}
	if !opened.Load() {
		t.Fatal("garbage did not open the circuit")
	}
	before := hits.Load()
	if _, err := c.Answer(context.Background(), q); !errors.Is(err, adapters.ErrUnavailable) || !strings.Contains(err.Error(), "circuit") {
		t.Fatalf("err = %v, want ErrUnavailable from the open circuit", err)
	}
	if hits.Load() != before {
		t.Error("an open circuit still called the upstream")
	}
}

func TestDoesNotRetryClientErrors(t *testing.T) {
	src, q := memory()
	h, n := counting(httpsource.Handler(src, httpsource.HandlerOptions{}), func(_ int64, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"no"}`))
		return true
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	_, err := client(t, srv.URL, fast(httpsource.Options{})).Answer(context.Background(), q)
	if !errors.Is(err, adapters.ErrInvalidQuery) {
		t.Fatalf("err = %v, want ErrInvalidQuery", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests, want 1", n.Load())
	}
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	src, q := memory()
	h, n := counting(httpsource.Handler(src, httpsource.HandlerOptions{}), func(_ int64, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	var opened atomic.Bool
	c := client(t, srv.URL, fast(httpsource.Options{
		MaxAttempts: 2, TripAfter: 4, OpenFor: time.Hour,
		OnStateChange: func(_, to string) { opened.Store(to == "open") },
	}))
	for range 2 { // 2 calls x 2 attempts = 4 consecutive failures
		if _, err := c.Answer(context.Background(), q); !errors.Is(err, adapters.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable after the retries", err)
		}
	}
	if !opened.Load() {
		t.Fatal("breaker did not open")
	}
	before := n.Load()
	start := time.Now()
	_, err := c.Answer(context.Background(), q)
	if !errors.Is(err, adapters.ErrUnavailable) || !strings.Contains(err.Error(), "circuit") {
		t.Fatalf("err = %v, want ErrUnavailable from the open circuit", err)
	}
	if n.Load() != before {
		t.Error("an open circuit still called the upstream")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("open circuit took %v to fail", d)
	}
}

func TestOversizeResponseRefused(t *testing.T) {
	_, q := memory()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"found":true,"fields":{"x":"` + strings.Repeat("a", 4096) + `"}}`))
	}))
	defer srv.Close()
	_, err := client(t, srv.URL, fast(httpsource.Options{MaxResponseBytes: 1024})).Answer(context.Background(), q)
	if err == nil || !strings.Contains(err.Error(), "exceeds 1024 bytes") {
		t.Fatalf("err = %v, want the size bound", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests; an oversize answer must not be retried", n.Load())
	}
}

func TestCancelledDuringBackoff(t *testing.T) {
	_, q := memory()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		cancel() // the caller gives up while the upstream fails
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := client(t, srv.URL, httpsource.Options{BackoffBase: time.Hour, BackoffMax: time.Hour})
	if _, err := c.Answer(ctx, q); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "localhost:8080", "http://"} {
		if _, err := httpsource.New(u, httpsource.Options{}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

type failing struct{ err error }

func (failing) Name() string { return "failing" }
func (f failing) Answer(context.Context, adapters.Query) (adapters.Answer, error) {
	return adapters.Answer{}, f.err
}

func TestHandlerStatuses(t *testing.T) {
	src, q := memory()
	good, _ := json.Marshal(q)
	cases := []struct {
		name   string
		src    adapters.Source
		method string
		path   string
		body   string
		status int
	}{
		{"answer", src, "POST", httpsource.Path, string(good), 200},
		{"health", src, "GET", httpsource.HealthPath, "", 200},
		{"wrong method", src, "GET", httpsource.Path, "", 405},
		{"unknown path", src, "POST", "/v1/other", string(good), 404},
		{"malformed", src, "POST", httpsource.Path, "{", 400},
		{"unknown field", src, "POST", httpsource.Path, `{"type":"identity","x":1}`, 400},
		{"two queries", src, "POST", httpsource.Path, string(good) + string(good), 400},
		{"invalid query", src, "POST", httpsource.Path, `{"type":"nope","subject":{"id_number":"1","name":"a"}}`, 400},
		{"too large", src, "POST", httpsource.Path, `{"type":"` + strings.Repeat("a", 70<<10) + `"}`, 413},
		{"source down", failing{errors.New("db gone")}, "POST", httpsource.Path, string(good), 503},
		{"source slow", failing{context.DeadlineExceeded}, "POST", httpsource.Path, string(good), 504},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			httpsource.Handler(tc.src, httpsource.HandlerOptions{}).ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d (%s)", w.Code, tc.status, w.Body)
			}
			if tc.status >= 500 && strings.Contains(w.Body.String(), "db gone") {
				t.Error("internal error text leaked to the caller")
			}
		})
	}
}

// TestClassifiesEveryUpstreamFailure: every way an upstream can fail ends
// in a classified error — permanent (answered at once, never retried) or
// transient (retried within the bound) — and no upstream body text other
// than a protocol error message reaches the error.
func TestClassifiesEveryUpstreamFailure(t *testing.T) {
	const secret = "220102199003071234 王伟"
	cases := []struct {
		name     string
		status   int
		body     string
		header   map[string]string
		kind     fault.Kind
		reason   string
		requests int64 // how many the client sends (MaxAttempts 3)
	}{
		{"400 invalid query", 400, `{"error":"bad as_of"}`, nil, fault.PermanentKind, adapters.ReasonInvalidQuery, 1},
		{"401", 401, secret, nil, fault.PermanentKind, adapters.ReasonSourceRefused, 1},
		{"403", 403, `{"error":"forbidden"}`, nil, fault.PermanentKind, adapters.ReasonSourceRefused, 1},
		{"404", 404, "<html>" + secret + "</html>", nil, fault.PermanentKind, adapters.ReasonSourceRefused, 1},
		{"422", 422, `{"error":"x"}`, nil, fault.PermanentKind, adapters.ReasonSourceRefused, 1},
		{"302 not followed", 302, "", map[string]string{"Location": "http://127.0.0.1:1/elsewhere"}, fault.PermanentKind, adapters.ReasonSourceRefused, 1},
		{"unexpected member", 200, `{"found":false,"as_of":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z","source":"x","extra":1}`, nil, fault.PermanentKind, adapters.ReasonAnswerInvalid, 1},
		{"not JSON", 200, secret, nil, fault.TransientKind, "", 3},
		{"truncated JSON", 200, `{"found":true,"fields":{"id_name_match":tr`, nil, fault.TransientKind, "", 3},
		{"empty 200", 200, "", nil, fault.TransientKind, "", 3},
		{"HTML error page", 200, "<html><body>502 Bad Gateway " + secret + "</body></html>", nil, fault.TransientKind, "", 3},
		{"data after the answer", 200, `{"found":false,"as_of":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z","source":"x"} {"found":true}`, nil, fault.TransientKind, "", 3},
		{"wrong type", 200, `{"found":"yes","as_of":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z","source":"x"}`, nil, fault.PermanentKind, adapters.ReasonAnswerInvalid, 1},
		{"found without fields", 200, `{"found":true,"as_of":"2026-01-01T00:00:00Z","valid_until":"2026-02-01T00:00:00Z","source":"x"}`, nil, fault.PermanentKind, adapters.ReasonAnswerInvalid, 1},
		{"503", 503, secret, nil, fault.TransientKind, "", 3},
		{"408", 408, "", nil, fault.TransientKind, "", 3},
		{"429", 429, "", nil, fault.TransientKind, "", 3},
	}
	_, q := memory()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			_, err := client(t, srv.URL, fast(httpsource.Options{MaxAttempts: 3, TripAfter: 100})).Answer(context.Background(), q)
			if err == nil {
				t.Fatal("no error")
			}
			if got := fault.KindOf(err); got != c.kind {
				t.Errorf("kind %v, want %v (%v)", got, c.kind, err)
			}
			if got := fault.ReasonOf(err); got != c.reason {
				t.Errorf("reason %q, want %q (%v)", got, c.reason, err)
			}
			if c.kind == fault.TransientKind && !errors.Is(err, adapters.ErrUnavailable) {
				t.Errorf("a transient failure after the attempts must say unavailable: %v", err)
			}
			if n.Load() != c.requests {
				t.Errorf("%d requests, want %d", n.Load(), c.requests)
			}
			if strings.Contains(err.Error(), "王伟") || strings.Contains(err.Error(), "220102199003071234") {
				t.Errorf("the upstream body leaked into the error: %v", err)
			}
		})
	}
}
