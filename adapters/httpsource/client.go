package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/fault"
)

// Options tune a Client. Zero values take the defaults shown.
type Options struct {
	// Name is the client's name in answers; default "http".
	Name string
	// HTTPClient sends the requests (TLS, proxies, client certificates);
	// default a client with its own transport. Its Timeout should be zero:
	// AttemptTimeout bounds each attempt.
	HTTPClient *http.Client
	// Header is added to every request, e.g. Authorization.
	Header http.Header
	// AttemptTimeout bounds one attempt, response body included; default 2s.
	AttemptTimeout time.Duration
	// MaxAttempts is the number of attempts per Answer; default 3.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait before attempt n+1: a random
	// duration in [0, min(BackoffMax, BackoffBase·2^(n-1))]; defaults 50ms
	// and 1s.
	BackoffBase, BackoffMax time.Duration
	// MaxResponseBytes bounds a response body; default 1 MiB.
	MaxResponseBytes int64
	// TripAfter consecutive failed attempts open the circuit; default 5.
	TripAfter uint32
	// OpenFor is how long the circuit stays open before it lets one probe
	// through; default 30s.
	OpenFor time.Duration
	// OnStateChange, if set, is told of circuit state changes ("closed",
	// "half-open", "open"), e.g. for a metric.
	OnStateChange func(from, to string)
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "http"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	// A record service never redirects: following one would send the
	// query, personal data included, wherever the Location header says.
	// A copy, so the caller's client is left as it was.
	hc := *o.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = &hc
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 50 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Second
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.TripAfter == 0 {
		o.TripAfter = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 30 * time.Second
	}
}

// Client is an adapters.Source that asks an upstream record service over
// the protocol. It is safe for concurrent use.
type Client struct {
	url     string
	opt     Options
	base    string // the service's base URL, without a trailing /
	breaker *gobreaker.CircuitBreaker[[]byte]
}

// New returns a Client for the service at baseURL (scheme and host, and an
// optional path prefix before /v1/answer).
func New(baseURL string, opt Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("httpsource: base URL must be http(s)://host[/prefix], got %q", baseURL)
	}
	opt.defaults()
	base := strings.TrimSuffix(u.String(), "/")
	c := &Client{url: base + Path, base: base, opt: opt}
	c.breaker = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        opt.Name,
		MaxRequests: 1,
		Timeout:     opt.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= opt.TripAfter },
		IsSuccessful: func(err error) bool {
			var ae *attemptError
			return err == nil || (errors.As(err, &ae) && !ae.fault)
		},
		IsExcluded: func(err error) bool {
			var ae *attemptError
			return errors.As(err, &ae) && ae.caller
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if opt.OnStateChange != nil {
				opt.OnStateChange(from.String(), to.String())
			}
		},
	})
	return c, nil
}

// Name implements adapters.Source.
func (c *Client) Name() string { return c.opt.Name }

// attemptError classifies the failure of one attempt.
type attemptError struct {
	err    error
	retry  bool // worth another attempt
	fault  bool // counts against the upstream in the circuit breaker
	caller bool // the caller gave up; says nothing about the upstream
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// Answer implements adapters.Source. The answer's Source is the client's
// Name.
func (c *Client) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	if err := q.Validate(); err != nil {
		return adapters.Answer{}, err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return adapters.Answer{}, fmt.Errorf("httpsource: encode query: %w", err)
	}
	var a adapters.Answer
	err = c.call(ctx, c.url, body, func(data []byte) error {
		if err := decodeStrict(data, &a); err != nil {
			return fault.Permanentf(adapters.ReasonAnswerInvalid, "decode answer: %w", err)
		}
		if a.AsOf.IsZero() || (a.Found && a.Fields == nil) || (!a.Found && len(a.Fields) != 0) {
			return fault.Permanentf(adapters.ReasonAnswerInvalid, "malformed answer: as_of missing or fields inconsistent with found")
		}
		return nil
	})
	if err != nil {
		return adapters.Answer{}, err
	}
	a.Source = c.opt.Name
	return a, nil
}

// Changes implements adapters.ChangeFeed over POST /v1/changes. Each
// change's answer carries the client's Name as its Source.
func (c *Client) Changes(ctx context.Context, q adapters.ChangeQuery) (adapters.ChangePage, error) {
	if err := q.Validate(); err != nil {
		return adapters.ChangePage{}, err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return adapters.ChangePage{}, fmt.Errorf("httpsource: encode change query: %w", err)
	}
	var page adapters.ChangePage
	err = c.call(ctx, c.base+ChangesPath, body, func(data []byte) error {
		page = adapters.ChangePage{}
		if err := decodeStrict(data, &page); err != nil {
			return fault.Permanentf(adapters.ReasonAnswerInvalid, "decode changes: %w", err)
		}
		limit := q.Limit
		if limit == 0 {
			limit = adapters.MaxChangePage
		}
		if len(page.Changes) > limit || page.More != (page.Next != "") {
			return fault.Permanentf(adapters.ReasonAnswerInvalid, "malformed page of changes")
		}
		return nil
	})
	if err != nil {
		return adapters.ChangePage{}, err
	}
	for i := range page.Changes {
		page.Changes[i].Answer.Source = c.opt.Name
	}
	return page, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the value")
	}
	return nil
}

// call posts body to url with bounded, jittered retries behind the circuit
// breaker, and hands a 200 response that is well-formed JSON to decode
// (whose error is permanent). A 200 body that is not — garbled, truncated,
// empty — is a failed attempt like a 5xx: the upstream or something in
// front of it is failing, the query is not at fault, and asking again may
// succeed.
func (c *Client) call(ctx context.Context, url string, body []byte, decode func([]byte) error) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("httpsource: %w", err)
		}
		data, err := c.breaker.Execute(func() ([]byte, error) {
			data, err := c.attempt(ctx, url, body)
			if err == nil && !json.Valid(data) {
				return nil, &attemptError{err: fmt.Errorf("upstream answered 200 with a body that is not well-formed JSON (%d bytes, not shown)", len(data)), retry: true, fault: true}
			}
			if err == nil {
				if derr := decode(data); derr != nil {
					return nil, &attemptError{err: derr, fault: true}
				}
			}
			return data, err
		})
		if err == nil {
			_ = data
			return nil
		}
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return fmt.Errorf("httpsource: %w: circuit %w", adapters.ErrUnavailable, err)
		}
		var ae *attemptError
		if !errors.As(err, &ae) || !ae.retry {
			// Permanent failures carry their fault classification; the
			// rest (the caller gave up) are transient.
			return fmt.Errorf("httpsource: %w", err)
		}
		if attempt >= c.opt.MaxAttempts {
			return fmt.Errorf("httpsource: %w after %d attempts: %w", adapters.ErrUnavailable, attempt, err)
		}
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("httpsource: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.opt.BackoffBase << min(attempt-1, 30)
	if d <= 0 || d > c.opt.BackoffMax {
		d = c.opt.BackoffMax
	}
	return rand.N(d + 1)
}

// attempt sends one request and reads its 200 response within
// AttemptTimeout.
func (c *Client) attempt(parent context.Context, url string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, c.opt.AttemptTimeout)
	defer cancel()
	fail := func(err error, retry, fault bool) ([]byte, error) {
		if parent.Err() != nil {
			return nil, &attemptError{err: parent.Err(), caller: true}
		}
		if ctx.Err() != nil {
			// The attempt's own deadline passed: the upstream is slow.
			return nil, &attemptError{err: fmt.Errorf("attempt timed out after %v: %w", c.opt.AttemptTimeout, ctx.Err()), retry: true, fault: true}
		}
		return nil, &attemptError{err: err, retry: retry, fault: fault}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fail(err, false, false)
	}
	for k, vs := range c.opt.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.opt.HTTPClient.Do(req)
	if err != nil {
		return fail(err, true, true)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.opt.MaxResponseBytes+1))
	if err != nil {
		return fail(fmt.Errorf("read response: %w", err), true, true)
	}
	if int64(len(data)) > c.opt.MaxResponseBytes {
		return fail(fault.Permanentf(adapters.ReasonAnswerInvalid, "response exceeds %d bytes", c.opt.MaxResponseBytes), false, true)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusBadRequest:
		return fail(fmt.Errorf("%w: upstream: %s", adapters.ErrInvalidQuery, errorText(data)), false, false)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fail(fmt.Errorf("upstream busy (429)"), true, false)
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fail(fmt.Errorf("upstream status %d: %s", resp.StatusCode, errorText(data)), true, true)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fail(fault.Permanentf(adapters.ReasonSourceRefused, "upstream redirects (status %d); redirects are not followed", resp.StatusCode), false, true)
	default:
		// 401, 403, 404, 409, 422...: asking again gets the same answer.
		return fail(fault.Permanentf(adapters.ReasonSourceRefused, "upstream status %d: %s", resp.StatusCode, errorText(data)), false, true)
	}
	return data, nil
}

// errorText is what of an error body may reach logs and receipts: the
// "error" member of a protocol error body, printable and bounded — never
// the body itself, which may echo a query's personal data.
func errorText(data []byte) string {
	var e errorBody
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		return fmt.Sprintf("(%d-byte body not shown)", len(data))
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(e.Error, ""))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
