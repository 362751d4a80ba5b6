// Package console is the auditor console (监督检查控制台) served at /audit/
// on the broker's HTTP address: read-only pages to browse decisions by
// agency, period, outcome and reason; to open a receipt and see its checks
// (signature, inclusion in the transparency log, revocation status); to
// see the log's checkpoints and their witness cosignatures; to generate
// and download signed supervision reports; and to look up one person's
// decisions, only with a case reference, each look-up logged in the
// transparency log before it is answered.
//
// Who may reach it is not decided here: the broker mounts the handler
// behind webauth.Require(webauth.Auditor, ...), and the pages name the
// user webauth puts in the request's context.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/report"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/webauth"
)

// Store is what the console reads of the decision store and the log.
type Store interface {
	Browse(ctx context.Context, f store.BrowseFilter) ([]store.Decision, error)
	Get(ctx context.Context, digest string) (store.Decision, bool, error)
	BySubject(ctx context.Context, key string) ([]store.Decision, error)
	RecentCheckpoints(ctx context.Context, n int) ([][]byte, error)
	Count(ctx context.Context) (int, error)
}

// Check is one verdict on a receipt.
type Check struct {
	Name string
	Err  error
	Note string
}

// Agency is a directory entry as the console's filters show it.
type Agency struct{ ID, Name, Level, Region string }

// ReportRequest is what the report form asks for.
type ReportRequest struct {
	Filter report.Filter
	Period report.Period
	Format string
}

// Generated is a generated report: the file, the broker's detached JWS
// over it, and the report's figures for the summary page.
type Generated struct {
	Name      string
	File, JWS []byte
	Report    *report.Report
	Format    string
	By        string
	At        time.Time
}

// Lookup is one subject look-up, as it is logged: who, under which case
// reference, for which subject (a keyed digest, never the ID number), and
// how many decisions it found.
type Lookup struct {
	User, CaseReference, Subject string
	Found                        int
	At                           time.Time
}

// Options wire the console to the broker.
type Options struct {
	Broker string
	Store  Store
	// Agencies lists the directory, for the filters.
	Agencies func() []Agency
	// Checks verifies the receipt of a decision: signature, inclusion,
	// checkpoint, cosignatures, status.
	Checks func(ctx context.Context, d store.Decision) []Check
	// Bundle is the receipt bundle of a decision (receipt and inclusion
	// proof, for `certless receipt verify` offline).
	Bundle func(ctx context.Context, d store.Decision) ([]byte, error)
	// Policy is the log's key and its witnesses' cosignature keys.
	Policy func() (translog.Policy, error)
	// Report builds and signs a report.
	Report func(ctx context.Context, r ReportRequest) (name string, file, jws []byte, rep *report.Report, err error)
	// SubjectKeys are the keyed digests under which decisions about the
	// person with ID number id (and, for kinship, related) are stored.
	SubjectKeys func(id, related string) []string
	// SubjectDigest is the keyed digest a look-up of id is logged under.
	SubjectDigest func(id string) string
	// LogLookup appends a look-up to the transparency log and returns its
	// leaf index; the look-up is answered only when it succeeds.
	LogLookup func(ctx context.Context, l Lookup) (int64, error)
	// ValidID checks an ID number (GB 11643, check digit).
	ValidID func(id string) error
	Now     func() time.Time
	Log     *zap.Logger
}

//go:embed templates/*.html console.css
var files embed.FS

// Handler serves the console under /audit/.
type Handler struct {
	o     Options
	pages map[string]*template.Template
	mux   *http.ServeMux
	css   []byte

	mu      sync.Mutex
	reports []*generatedReport // newest last, at most maxReports
	busy    sync.Mutex         // one report at a time
}

type generatedReport struct {
	ID string
	Generated
}

// maxReports bounds the generated reports kept in memory for download.
const maxReports = 16

// New returns the console.
func New(o Options) (*Handler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	h := &Handler{o: o, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	var err error
	if h.css, err = files.ReadFile("console.css"); err != nil {
		return nil, err
	}
	for _, p := range []string{"overview", "decisions", "receipt", "log", "reports", "report", "subject", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		h.pages[p] = t
	}
	m := h.mux
	m.HandleFunc("GET /audit/{$}", h.overview)
	m.HandleFunc("GET /audit/console.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(h.css)
	})
	m.HandleFunc("GET /audit/decisions", h.decisions)
	m.HandleFunc("GET /audit/receipts/{digest}", h.receipt)
	m.HandleFunc("GET /audit/receipts/{digest}/bundle.json", h.bundle)
	m.HandleFunc("GET /audit/log", h.logPage)
	m.HandleFunc("GET /audit/reports", h.reportsPage)
	m.HandleFunc("POST /audit/reports", h.generate)
	m.HandleFunc("GET /audit/reports/{id}", h.reportPage)
	m.HandleFunc("GET /audit/reports/{id}/{file}", h.reportFile)
	m.HandleFunc("GET /audit/subject", h.subjectForm)
	m.HandleFunc("POST /audit/subject", h.subject)
	m.HandleFunc("/audit/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "no such page")
	})
	return h, nil
}

// csrf refuses cross-origin state-changing requests (basic auth is sent
// by the browser to any page that asks, so a form elsewhere must not post
// here).
var csrf = http.NewCrossOriginProtection()

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if err := csrf.Check(r); err != nil {
		h.fail(w, r, http.StatusForbidden, "a cross-origin request was refused")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, page string, status int, data map[string]any) {
	data["Broker"] = h.o.Broker
	data["User"] = userOf(r)
	data["Page"] = page
	data["Now"] = h.o.Now()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := h.pages[page].Execute(w, data); err != nil {
		h.o.Log.Error("console page", zap.String("page", page), zap.Error(err))
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, "error", status, map[string]any{"Status": status, "Message": msg})
}

// internal answers a failure of the broker's own parts; the cause goes to
// the log, the page says what failed.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.o.Log.Error("console: "+what, zap.Error(err))
	status := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusServiceUnavailable
	}
	h.fail(w, r, status, what+" failed; the broker's log says why")
}

func userOf(r *http.Request) string { return webauth.User(r.Context()) }

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
