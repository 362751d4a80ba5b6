package webauth_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/webauth"
)

func writeWebConfig(t *testing.T, dir string, users map[string]string, extra string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(extra)
	b.WriteString("basic_auth_users:\n")
	for u, p := range users {
		h, err := webauth.HashPassword(p)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("  " + u + ": " + h + "\n")
	}
	path := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// routes is the broker's separation in small: public, operator, auditor.
func routes(g *webauth.Guard) http.Handler {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "user="+webauth.User(r.Context()))
	})
	mux := http.NewServeMux()
	mux.Handle("/.well-known/jwks.json", g.Public(echo))
	mux.Handle("/metrics", g.Require(webauth.Operator, echo))
	mux.Handle("/audit/", g.Require(webauth.Auditor, echo))
	mux.Handle("/", http.NotFoundHandler())
	return mux
}

func status(t *testing.T, c *http.Client, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRoleSeparation: the public reaches the JWKS only; an operator
// /metrics and not /audit/; an auditor /audit/ and not /metrics; a wrong
// password, an unknown user or none gets a Basic challenge; unrouted paths
// are not found.
func TestRoleSeparation(t *testing.T) {
	dir := t.TempDir()
	file := writeWebConfig(t, dir, map[string]string{"ops": "ops-pass", "alice": "alice-pass", "nobody": "nobody-pass"},
		"http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
	g, err := webauth.New(webauth.Options{File: file, Operators: []string{"ops"}, Auditors: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(routes(g))
	defer srv.Close()
	c := srv.Client()
	cases := []struct {
		path, user, pass string
		want             int
		body             string
	}{
		{"/.well-known/jwks.json", "", "", 200, "user="},
		{"/metrics", "", "", 401, "log in"},
		{"/metrics", "ops", "ops-pass", 200, "user=ops"},
		{"/metrics", "ops", "wrong", 401, ""},
		{"/metrics", "alice", "alice-pass", 403, "does not hold the operator role"},
		{"/audit/", "", "", 401, ""},
		{"/audit/", "ops", "ops-pass", 403, "does not hold the auditor role"},
		{"/audit/", "alice", "alice-pass", 200, "user=alice"},
		{"/audit/", "alice", "ops-pass", 401, ""},
		{"/audit/", "mallory", "alice-pass", 401, ""},
		{"/audit/", "nobody", "nobody-pass", 403, ""},
		{"/debug/pprof/", "alice", "alice-pass", 404, ""},
	}
	for _, tc := range cases {
		code, body := status(t, c, srv.URL+tc.path, tc.user, tc.pass)
		if code != tc.want || !strings.Contains(body, tc.body) {
			t.Errorf("%s as %q: %d %q, want %d %q", tc.path, tc.user, code, body, tc.want, tc.body)
		}
	}
	res, err := c.Get(srv.URL + "/audit/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") || res.Header.Get("X-Frame-Options") != "deny" {
		t.Errorf("challenge %q, headers %v", res.Header.Get("WWW-Authenticate"), res.Header)
	}
}

// TestReloadKeepsLastGood: a changed password takes effect without a
// restart, at the next re-read; a broken file is refused and the last good
// one stays.
func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	file := writeWebConfig(t, dir, map[string]string{"alice": "first"}, "")
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	g, err := webauth.New(webauth.Options{File: file, Auditors: []string{"alice"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(routes(g))
	defer srv.Close()
	code := func(pass string) int {
		c, _ := status(t, srv.Client(), srv.URL+"/audit/", "alice", pass)
		return c
	}
	if code("first") != 200 {
		t.Fatal("first password refused")
	}
	touch := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		m := now.Add(time.Minute)
		_ = os.Chtimes(file, m, m)
	}
	h, _ := webauth.HashPassword("second")
	touch("basic_auth_users:\n  alice: " + h + "\n")
	if code("second") != 401 || code("first") != 200 {
		t.Fatal("re-read within the second")
	}
	now = now.Add(2 * time.Second)
	if code("second") != 200 || code("first") != 401 {
		t.Fatal("the new password is not in force after the re-read")
	}
	touch("basic_auth_users:\n  alice: not-a-bcrypt-hash\n")
	now = now.Add(2 * time.Second)
	if code("second") != 200 {
		t.Fatal("a broken file replaced the good one")
	}
}

// TestBadFilesRefused: a file that is not Prometheus's format, a plain
// password, or a role for a user not in the file is refused at start.
func TestBadFilesRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	for _, content := range []string{"basic_auth_users:\n  alice: plain\n", "unknown_key: 1\n", "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n"} {
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := webauth.New(webauth.Options{File: bad}); err == nil {
			t.Errorf("accepted %q", content)
		}
	}
	good := writeWebConfig(t, dir, map[string]string{"alice": "x"}, "")
	if _, err := webauth.New(webauth.Options{File: good, Auditors: []string{"bob"}}); err == nil || !strings.Contains(err.Error(), `"bob"`) {
		t.Errorf("a role for an unknown user: %v", err)
	}
	if _, err := webauth.New(webauth.Options{Auditors: []string{"alice"}}); err == nil {
		t.Error("roles without a file accepted")
	}
}

// TestNoFileLoopbackOperatorsOnly: without a web configuration file the
// operator paths answer loopback clients, the console nobody; with a file
// naming auditors only, the same for operators, and the console needs an
// auditor login.
func TestNoFileLoopbackOperatorsOnly(t *testing.T) {
	g, err := webauth.New(webauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, routes(g), []loopbackCase{
		{"/metrics", "127.0.0.1:5555", 200},
		{"/metrics", "[::1]:5555", 200},
		{"/metrics", "10.1.2.3:5555", 403},
		{"/audit/", "127.0.0.1:5555", 403},
		{"/.well-known/jwks.json", "10.1.2.3:5555", 200},
	})
	file := writeWebConfig(t, t.TempDir(), map[string]string{"alice": "pw"}, "")
	if g, err = webauth.New(webauth.Options{File: file, Auditors: []string{"alice"}}); err != nil {
		t.Fatal(err)
	}
	check(t, routes(g), []loopbackCase{
		{"/metrics", "127.0.0.1:5555", 200},
		{"/metrics", "10.1.2.3:5555", 403},
		{"/audit/", "127.0.0.1:5555", 401},
	})
}

type loopbackCase struct {
	path, remote string
	want         int
}

func check(t *testing.T, h http.Handler, cases []loopbackCase) {
	t.Helper()
	for _, tc := range cases {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.RemoteAddr = tc.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s from %s: %d, want %d", tc.path, tc.remote, rec.Code, tc.want)
		}
	}
}

// TestTLS: with tls_server_config the guard's TLS configuration serves
// the file's certificate, and basic auth works over it.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testenv.ServerCert(t)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeWebConfig(t, dir, map[string]string{"alice": "pw"}, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
	g, err := webauth.New(webauth.Options{File: file, Auditors: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := g.TLS()
	if err != nil || tc == nil {
		t.Fatalf("TLS %v %v", tc, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: routes(g), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(ln, tc)) }()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, body := status(t, c, "https://"+ln.Addr().String()+"/audit/", "alice", "pw"); code != 200 || body != "user=alice" {
		t.Fatalf("over TLS: %d %q", code, body)
	}
}
