package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/fault"
)

const (
	// DefaultTimeout bounds an add-checkpoint call whose context has no
	// deadline.
	DefaultTimeout = 30 * time.Second
	// MaxResponse is the largest response body read from a witness.
	MaxResponse = 64 << 10
	// MaxProof is the most consistency proof lines tlog-witness allows.
	MaxProof = 63
	// maxExcerpt bounds the part of a refusal's body quoted in an error.
	maxExcerpt = 256
)

// Witness is one tlog-witness the log asks for cosignatures.
type Witness struct {
	// Name is the witness's key name, the name on its cosignatures.
	Name string
	// URL is the witness's submission prefix: add-checkpoint is POSTed to
	// URL + "/add-checkpoint".
	URL string
	// Verifier checks the witness's cosignatures; New sets a
	// *CosignatureVerifier.
	Verifier note.Verifier
	// HTTP is the client used; nil means one with DefaultTimeout that does
	// not follow redirects.
	HTTP *http.Client
}

var defaultClient = &http.Client{
	Timeout: DefaultTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// New returns the witness with verifier key vkey (c2sp.org/signed-note form
// of an Ed25519 cosignature/v1 key, as litewitness prints it) reached at the
// http or https submission prefix rawURL.
func New(vkey, rawURL string) (*Witness, error) {
	v, err := NewCosignatureVerifier(vkey)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("witness %s: URL: %w", v.Name(), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("witness %s: URL %q is not an http(s) prefix", v.Name(), rawURL)
	}
	return &Witness{
		Name:     v.Name(),
		URL:      strings.TrimSuffix(u.String(), "/"),
		Verifier: v,
	}, nil
}

// ConflictError is a witness's 409 Conflict: its latest cosigned checkpoint
// of the log has Size leaves, not the OldSize of the request. The caller
// retries with Size as the old size and a consistency proof from it. When
// Size equals the submitted checkpoint's size the witness holds a different
// root hash at that size: a fork, not something a retry can mend.
type ConflictError struct {
	Witness string
	OldSize int64 // the old size sent
	Size    int64 // the witness's latest cosigned size
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness %s: conflict: its latest cosigned size is %d, the request's old size %d", e.Witness, e.Size, e.OldSize)
}

// StatusError is a witness's answer other than 200 and 409.
type StatusError struct {
	Witness string
	Code    int
	Body    string // an excerpt, at most 256 bytes, control characters replaced
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("witness %s: HTTP %d %s", e.Witness, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// AddCheckpoint submits signedCheckpoint (a c2sp.org/tlog-checkpoint body
// signed as a note by the log) to the witness with the consistency proof
// from oldSize, the size of the last checkpoint the witness cosigned (0 for
// none; the proof must then be empty), and returns the witness's verified
// cosignatures of it: at least one, each by w.Verifier's key over exactly
// the checkpoint body. Signature lines of other keys are ignored.
//
// A 409 is a *ConflictError. See the package documentation for how the
// other failures are classified.
func (w *Witness) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, signedCheckpoint []byte) ([]Cosignature, error) {
	if w.Verifier == nil {
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: no verifier", w.Name)
	}
	body, err := checkpointBody(signedCheckpoint)
	if err != nil {
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: %w", w.Name, err)
	}
	c, _ := torchwood.ParseCheckpoint(body) // checked by checkpointBody
	switch {
	case oldSize < 0 || oldSize > c.N:
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: old size %d for a checkpoint of size %d", w.Name, oldSize, c.N)
	case len(proof) > MaxProof:
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: consistency proof of %d hashes (at most %d)", w.Name, len(proof), MaxProof)
	case (oldSize == 0 || oldSize == c.N) && len(proof) != 0:
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: a consistency proof from size %d to %d must be empty", w.Name, oldSize, c.N)
	}

	var req bytes.Buffer
	fmt.Fprintf(&req, "old %d\n", oldSize)
	for _, h := range proof {
		req.WriteString(h.String())
		req.WriteByte('\n')
	}
	req.WriteByte('\n')
	req.Write(signedCheckpoint)

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+"/add-checkpoint", &req)
	if err != nil {
		return nil, fault.Permanentf("witness_request_invalid", "witness %s: %w", w.Name, err)
	}
	// tlog-witness names no request media type; the body is UTF-8 text.
	hreq.Header.Set("Content-Type", "text/plain; charset=utf-8")
	hc := w.HTTP
	if hc == nil {
		hc = defaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fault.Transient(fmt.Errorf("witness %s: add-checkpoint: %w", w.Name, err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, fault.Transient(fmt.Errorf("witness %s: reading the answer: %w", w.Name, err))
	}
	if len(answer) > MaxResponse {
		return nil, fault.Permanentf("witness_bad_response", "witness %s: answer larger than %d bytes (HTTP %d)", w.Name, MaxResponse, resp.StatusCode)
	}

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return w.cosignatures(body, answer)
	case code == http.StatusConflict:
		return nil, w.conflict(oldSize, resp.Header.Get("Content-Type"), answer)
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return nil, fault.Transient(&StatusError{Witness: w.Name, Code: code, Body: excerpt(answer)})
	default:
		return nil, fault.Permanent(statusReason(code), &StatusError{Witness: w.Name, Code: code, Body: excerpt(answer)})
	}
}

func statusReason(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "witness_bad_request"
	case http.StatusForbidden:
		return "witness_forbidden" // the log's signature or key is not trusted
	case http.StatusNotFound:
		return "witness_unknown_log"
	case http.StatusUnprocessableEntity:
		return "witness_inconsistent" // the consistency proof did not verify
	}
	if code >= 400 {
		return "witness_rejected"
	}
	return "witness_bad_response" // 1xx, other 2xx, 3xx
}

func (w *Witness) conflict(oldSize int64, contentType string, answer []byte) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "text/x.tlog.size" {
		return fault.Permanentf("witness_bad_response", "witness %s: 409 with Content-Type %q, want text/x.tlog.size", w.Name, contentType)
	}
	s, ok := strings.CutSuffix(string(answer), "\n")
	n, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return fault.Permanentf("witness_bad_response", "witness %s: 409 body %q is not a tree size", w.Name, excerpt(answer))
	}
	return &ConflictError{Witness: w.Name, OldSize: oldSize, Size: n}
}

// cosignatures verifies a 200 answer, signature lines, against the witness's
// key over the checkpoint body, the way tlog-witness suggests: appended to
// the body and opened as a note that only the witness's key can verify.
func (w *Witness) cosignatures(body string, answer []byte) ([]Cosignature, error) {
	if len(answer) == 0 || answer[len(answer)-1] != '\n' {
		return nil, fault.Permanentf("witness_bad_response", "witness %s: 200 answer is not newline-terminated signature lines: %q", w.Name, excerpt(answer))
	}
	for _, line := range strings.SplitAfter(string(answer[:len(answer)-1]), "\n") {
		if !strings.HasPrefix(line, "— ") {
			return nil, fault.Permanentf("witness_bad_response", "witness %s: 200 answer line %q is not a note signature", w.Name, excerpt([]byte(line)))
		}
	}
	n, err := note.Open(append([]byte(body+"\n"), answer...), note.VerifierList(w.Verifier))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, fault.Permanentf("witness_no_cosignature", "witness %s: no signature line by key %s+%08x among %d", w.Name, w.Verifier.Name(), w.Verifier.KeyHash(), len(unverified.Note.UnverifiedSigs))
	case errors.As(err, &invalid):
		return nil, fault.Permanentf("witness_bad_cosignature", "witness %s: cosignature does not verify over the checkpoint", w.Name)
	case err != nil:
		return nil, fault.Permanentf("witness_bad_response", "witness %s: signature lines: %w", w.Name, err)
	}
	out := make([]Cosignature, 0, len(n.Sigs))
	for _, s := range n.Sigs {
		c, err := newCosignature(s)
		if err != nil {
			return nil, fault.Permanent("witness_bad_cosignature", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// checkpointBody returns the text of a well-formed signed note whose text is
// a checkpoint in canonical form.
func checkpointBody(signed []byte) (string, error) {
	n, err := splitNote(signed)
	if err != nil {
		return "", err
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		return "", fmt.Errorf("note text is not a checkpoint: %w", err)
	}
	if c.String() != n.Text {
		return "", errors.New("checkpoint is not in canonical form")
	}
	return n.Text, nil
}

// splitNote parses a signed note without verifying any signature.
func splitNote(signed []byte) (*note.Note, error) {
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, fmt.Errorf("malformed signed note: %v", err)
	}
	return unverified.Note, nil
}

// excerpt is at most maxExcerpt bytes of b as one line of valid UTF-8:
// trailing white space removed, newlines shown as spaces and other control
// characters as U+FFFD.
func excerpt(b []byte) string {
	cut := len(b) > maxExcerpt
	if cut {
		b = b[:maxExcerpt]
	}
	s := strings.TrimRight(strings.ToValidUTF8(string(b), "\uFFFD"), " \r\n\t")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return ' '
		case r < 0x20 || r == 0x7f:
			return '\uFFFD'
		}
		return r
	}, s)
	if cut {
		s += "…"
	}
	return s
}
