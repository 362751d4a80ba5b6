// Package webauth separates who may reach what on the broker's HTTP
// address. Credentials and TLS come from a web configuration file in the
// format of Prometheus's own (github.com/prometheus/exporter-toolkit/web:
// tls_server_config, http_server_config, basic_auth_users with bcrypt
// hashes), so an operator's existing file and tooling work unchanged;
// which user holds which role comes from the broker's configuration.
//
// Three kinds of path: public ones (the JWKS, the log's tiles, status
// lists) anybody reaches; operator ones (/metrics, /healthz, /readyz) and
// auditor ones (/audit/) need a user of that role. Everything else is not
// routed at all. Without a web configuration file, or with no operator
// named, the operator paths answer loopback clients only; with no auditor
// named the auditor paths answer nobody.
package webauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Role is what a request needs to be served.
type Role string

const (
	// Operator reaches the metrics and health endpoints.
	Operator Role = "operator"
	// Auditor reaches the auditor console.
	Auditor Role = "auditor"
)

// Options configure a Guard.
type Options struct {
	// File is the web configuration file; "" for none.
	File string
	// Operators and Auditors name the users of basic_auth_users holding
	// each role. A user may hold both; a user in neither reaches nothing.
	Operators, Auditors []string
	Log                 *zap.Logger
	// Realm names the broker in the browser's login prompt.
	Realm string
	// Now is the clock of the file's re-reads (time.Now when nil).
	Now func() time.Time
	// Refused, when set, is told of every refusal: the role the path
	// needs ("" for a public one) and the status (401, 403, 429).
	Refused func(role Role, status int)
}

// Guard checks requests against the web configuration file, re-reading
// it when it changes (a bad new file is logged and the last good one
// kept).
type Guard struct {
	opts Options
	log  *zap.Logger

	mu      sync.Mutex
	cfg     *web.Config
	limiter *rate.Limiter // the file's rate_limit; nil for none
	modTime time.Time
	size    int64
	checked time.Time

	cacheMu sync.Mutex
	cache   map[[32]byte]bool
	// bcryptMu runs one comparison at a time, as exporter-toolkit does:
	// a flood of bad passwords costs one core, not all.
	bcryptMu sync.Mutex
}

// fakeHash is compared for an unknown user, so that the time taken does
// not tell which users exist (exporter-toolkit's: bcrypt of
// "fakepassword", cost 10).
const fakeHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

// maxCache bounds the remembered outcomes of (user, hash, password).
const maxCache = 1024

// New loads the web configuration file of opts, if any. A file that does
// not parse, names an unknown key, holds a password that is not a bcrypt
// hash, or whose TLS files cannot be loaded is an error; so is a role given
// to a user the file does not list.
func New(opts Options) (*Guard, error) {
	g := &Guard{opts: opts, log: opts.Log, cache: map[[32]byte]bool{}}
	if g.log == nil {
		g.log = zap.NewNop()
	}
	if g.opts.Now == nil {
		g.opts.Now = time.Now
	}
	if g.opts.Realm == "" {
		g.opts.Realm = "certless"
	}
	if opts.File == "" {
		if len(opts.Operators)+len(opts.Auditors) > 0 {
			return nil, errors.New("webauth: operators or auditors are named but there is no web configuration file (http.web_config_file) to hold their passwords")
		}
		return g, nil
	}
	c, st, err := load(opts.File)
	if err != nil {
		return nil, err
	}
	if err := g.checkRoles(c); err != nil {
		return nil, err
	}
	g.cfg, g.modTime, g.size, g.checked = c, st.ModTime(), st.Size(), g.opts.Now()
	g.limiter = limiterOf(c)
	return g, nil
}

func (g *Guard) checkRoles(c *web.Config) error {
	for _, u := range append(slices.Clone(g.opts.Operators), g.opts.Auditors...) {
		if _, ok := c.Users[u]; !ok {
			return fmt.Errorf("webauth: %s: user %q holds a role but is not in basic_auth_users", g.opts.File, u)
		}
	}
	return nil
}

// load reads a web configuration file exactly as exporter-toolkit does:
// its own validation first, then the same defaults and strict decoding.
func load(path string) (*web.Config, os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("webauth: web configuration: %w", err)
	}
	if err := web.Validate(path); err != nil {
		return nil, nil, fmt.Errorf("webauth: web configuration %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("webauth: web configuration: %w", err)
	}
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, nil, fmt.Errorf("webauth: web configuration %s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	return c, st, nil
}

// limiterOf is the file's rate_limit as exporter-toolkit applies it: every
// request takes a token; none left is 429.
func limiterOf(c *web.Config) *rate.Limiter {
	if c.RateLimiterConfig.Interval <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Every(c.RateLimiterConfig.Interval), c.RateLimiterConfig.Burst)
}

// admit applies the headers and the rate limit of c; false when the
// request was answered 429.
func (g *Guard) admit(w http.ResponseWriter, c *web.Config, role Role) bool {
	g.headers(w, c)
	g.mu.Lock()
	l := g.limiter
	g.mu.Unlock()
	if l != nil && !l.Allow() {
		g.refuse(role, http.StatusTooManyRequests)
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return false
	}
	return true
}

func (g *Guard) refuse(role Role, status int) {
	if g.opts.Refused != nil {
		g.opts.Refused(role, status)
	}
}

// current is the configuration in force, re-read at most once a second
// when the file changed.
func (g *Guard) current() *web.Config {
	if g.opts.File == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.opts.Now()
	if now.Sub(g.checked) < time.Second {
		return g.cfg
	}
	g.checked = now
	st, err := os.Stat(g.opts.File)
	if err != nil || (st.ModTime().Equal(g.modTime) && st.Size() == g.size) {
		return g.cfg
	}
	c, st, err := load(g.opts.File)
	if err == nil {
		err = g.checkRoles(c)
	}
	if err != nil {
		g.log.Error("web configuration not reloaded; the last good one stays in force", zap.String("file", g.opts.File), zap.Error(err))
		return g.cfg
	}
	g.cfg, g.modTime, g.size = c, st.ModTime(), st.Size()
	g.limiter = limiterOf(c)
	g.cacheMu.Lock()
	clear(g.cache)
	g.cacheMu.Unlock()
	g.log.Info("web configuration reloaded", zap.String("file", g.opts.File), zap.Int("users", len(c.Users)))
	return c
}

// Configured reports whether requests of role are authenticated (a web
// configuration file with users, some holding role).
func (g *Guard) Configured(role Role) bool {
	c := g.current()
	return c != nil && len(c.Users) > 0 && len(g.usersOf(role)) > 0
}

// TLS returns the server TLS configuration of the file, or nil when the
// file configures none. Certificates are read at each handshake, so a
// renewed certificate takes effect without a restart.
func (g *Guard) TLS() (*tls.Config, error) {
	c := g.current()
	if c == nil || !c.TLSConfig.IsEnabled() {
		return nil, nil
	}
	tc, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("webauth: TLS: %w", err)
	}
	return tc, nil
}

type userKey struct{}

// User is the authenticated user of a request Require let through ("" for
// a loopback operator without a web configuration file).
func User(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// WithUser returns ctx carrying user, as Require sets it (for tests of
// handlers behind it).
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// Public serves h to anybody, with the file's response headers.
func (g *Guard) Public(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.admit(w, g.current(), "") {
			h.ServeHTTP(w, r)
		}
	})
}

func (g *Guard) headers(w http.ResponseWriter, c *web.Config) {
	if c == nil {
		return
	}
	for k, v := range c.HTTPConfig.Header {
		w.Header().Set(k, v)
	}
}

// Require serves h only to a user holding role: 401 with a Basic
// challenge without valid credentials, 403 with valid credentials of a
// user without the role. A role nobody holds (no file, or no user named
// for it) is served to nobody, except the operator role to loopback
// clients: a Prometheus on the same host scrapes without a login.
func (g *Guard) Require(role Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := g.current()
		if !g.admit(w, c, role) {
			return
		}
		if c == nil || len(c.Users) == 0 || len(g.usersOf(role)) == 0 {
			if role == Operator && loopback(r.RemoteAddr) {
				h.ServeHTTP(w, r)
				return
			}
			why := "this endpoint needs an operator login: set http.web_config_file and http.operators (loopback clients are served without one)"
			if role == Auditor {
				why = "the auditor console needs logins: set http.web_config_file (bcrypt basic_auth_users) and http.auditors"
			}
			g.refuse(role, http.StatusForbidden)
			http.Error(w, why, http.StatusForbidden)
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || !g.check(c, user, pass) {
			g.refuse(role, http.StatusUnauthorized)
			w.Header().Set("WWW-Authenticate", `Basic realm="`+g.opts.Realm+`", charset="UTF-8"`)
			http.Error(w, "log in: this page needs a user of the "+string(role)+" role", http.StatusUnauthorized)
			return
		}
		if !g.holds(user, role) {
			g.refuse(role, http.StatusForbidden)
			g.log.Info("refused: user without the role", zap.String("user", user), zap.String("role", string(role)), zap.String("path", r.URL.Path))
			http.Error(w, "user "+user+" does not hold the "+string(role)+" role", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r.WithContext(WithUser(r.Context(), user)))
	})
}

func (g *Guard) usersOf(role Role) []string {
	switch role {
	case Operator:
		return g.opts.Operators
	case Auditor:
		return g.opts.Auditors
	}
	return nil
}

func (g *Guard) holds(user string, role Role) bool { return slices.Contains(g.usersOf(role), user) }

// check compares pass with user's bcrypt hash, remembering the outcome
// (keyed by a digest of user, hash and password, never the password).
func (g *Guard) check(c *web.Config, user, pass string) bool {
	hash, known := c.Users[user]
	if !known {
		hash = fakeHash
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%q\x00%q\x00%q", user, string(hash), pass)))
	g.cacheMu.Lock()
	okCached, cached := g.cache[key]
	g.cacheMu.Unlock()
	if cached {
		return okCached && known
	}
	g.bcryptMu.Lock()
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass))
	g.bcryptMu.Unlock()
	ok := known && err == nil
	g.cacheMu.Lock()
	if len(g.cache) >= maxCache {
		clear(g.cache)
	}
	g.cache[key] = ok
	g.cacheMu.Unlock()
	return ok
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HashPassword returns the bcrypt hash of password for basic_auth_users.
func HashPassword(password string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("webauth: hash: %w", err)
	}
	return string(b), nil
}
