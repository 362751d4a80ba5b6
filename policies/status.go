package policies

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
)

// Statement is a lifecycle statement: one party, alone, suspends,
// terminates or resumes ("active") one agreement version, named by id,
// version and document digest. It is the payload of a compact JWS
// (protected header {"alg", "kid"}) signed by a key of that party; the file
// <name>.yaml.status.jws holds one such JWS per line, in any order.
//
// The rules, applied in order of At (ties in file order): a statement
// applies only to an agreement whose document status is active or
// suspended; suspended may come from either party at any time before
// termination; active (resume) only from a party that suspended, and the
// agreement is active again once no party's suspension remains (a
// suspension co-signed in the document counts as both parties'); terminated
// is final. A statement takes effect at its At.
type Statement struct {
	Agreement string    `json:"agreement"`
	Version   int       `json:"version"`
	Digest    string    `json:"digest"`
	Status    Status    `json:"status"`
	At        time.Time `json:"at"`
	// By is the party that signed, KID its key; set by ParseStatements.
	By  string `json:"-"`
	KID string `json:"-"`
}

// SignStatement returns one line for the .status.jws file beside doc: a
// compact JWS by key saying that the agreement a (of exactly doc) has
// status (suspended, terminated or active) from at. Append it to the file.
func SignStatement(doc []byte, a *Agreement, status Status, key *keys.Private, at time.Time) ([]byte, error) {
	if key == nil || key.Signer == nil {
		return nil, errors.New("policies: statement: no key")
	}
	if status != StatusSuspended && status != StatusTerminated && status != StatusActive {
		return nil, fmt.Errorf("policies: statement: status %q (want suspended, terminated or active)", status)
	}
	if !a.Party(key.Agency) {
		return nil, fmt.Errorf("policies: statement: %s is not a party of %s", key.Agency, a.ID)
	}
	payload, err := json.Marshal(Statement{Agreement: a.ID, Version: a.Version, Digest: Digest(doc), Status: status, At: at.UTC()})
	if err != nil {
		return nil, err
	}
	jws, err := envelope.SignBytes(key, payload)
	if err != nil {
		return nil, fmt.Errorf("policies: statement: %w", err)
	}
	return append(jws, '\n'), nil
}

// ParseStatements verifies every statement of a .status.jws file b against
// the agreement a of exactly doc and returns them in the order they apply.
// Any statement that is malformed, badly signed, by a non-party, for other
// bytes or against the rules makes the whole file an *Error: a suspension
// must never be lost silently.
func ParseStatements(b, doc []byte, a *Agreement, resolver envelope.KeyResolver) ([]Statement, error) {
	if len(b) > MaxStatusBytes {
		return nil, refuse(ReasonStatementInvalid, "%d bytes, limit %d", len(b), MaxStatusBytes)
	}
	digest := Digest(doc)
	var out []Statement
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(out) == MaxStatements {
			return nil, refuse(ReasonStatementInvalid, "more than %d statements", MaxStatements)
		}
		st, err := verifyStatement(line, resolver)
		if err != nil {
			err.Detail = fmt.Sprintf("line %d: %s", i+1, err.Detail)
			return nil, err
		}
		switch {
		case !a.Party(st.By):
			return nil, refuse(ReasonWrongParty, "line %d: %s is not a party of %s", i+1, st.KID, a.ID)
		case st.Agreement != a.ID || st.Version != a.Version || st.Digest != digest:
			return nil, refuse(ReasonStatementInvalid, "line %d: for %s v%d %s, not this document (%s v%d %s)", i+1, st.Agreement, st.Version, st.Digest, a.ID, a.Version, digest)
		}
		out = append(out, st)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if _, _, err := fold(a, out, time.Time{}); err != nil {
		return nil, err
	}
	return out, nil
}

// verifyStatement checks one compact JWS statement.
func verifyStatement(raw []byte, resolver envelope.KeyResolver) (Statement, *Error) {
	var st Statement
	parts := bytes.Split(raw, []byte{'.'})
	if len(parts) != 3 {
		return st, refuse(ReasonStatementInvalid, "not a compact JWS")
	}
	hdr, err1 := base64.RawURLEncoding.DecodeString(string(parts[0]))
	payload, err2 := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err1 != nil || err2 != nil {
		return st, refuse(ReasonStatementInvalid, "not base64url")
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := strictDecode(hdr, &h); err != nil {
		return st, &Error{Reason: ReasonStatementInvalid, Detail: "protected header (only alg and kid)", Err: err}
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	if alg != jose.EdDSA && alg != jose.ES256 {
		return st, refuse(ReasonSignatureInvalid, "alg %q (allowed: EdDSA, ES256)", h.Alg)
	}
	party, _, ok := keys.SplitKID(h.Kid)
	if !ok || resolver == nil {
		return st, refuse(ReasonUnknownKey, "kid %q", h.Kid)
	}
	key, ok := resolver.Lookup(h.Kid)
	if !ok || key.Use() != keys.UseSig {
		return st, refuse(ReasonUnknownKey, "no signing key %q", h.Kid)
	}
	if string(key.Alg) != h.Alg {
		return st, refuse(ReasonSignatureInvalid, "key %s is for %s", h.Kid, key.Alg)
	}
	obj, err := jose.ParseSignedCompact(string(raw), []jose.SignatureAlgorithm{alg})
	if err != nil {
		return st, &Error{Reason: ReasonSignatureInvalid, Detail: h.Kid, Err: err}
	}
	if _, err := obj.Verify(key.Key); err != nil {
		return st, &Error{Reason: ReasonSignatureInvalid, Detail: h.Kid, Err: err}
	}
	if sig, _ := base64.RawURLEncoding.DecodeString(string(parts[2])); alg == jose.ES256 && highS(sig) {
		return st, refuse(ReasonSignatureInvalid, "ES256 signature of %s is not low-S", h.Kid)
	}
	if err := strictDecode(payload, &st); err != nil {
		return st, &Error{Reason: ReasonStatementInvalid, Detail: "payload", Err: err}
	}
	if st.At.IsZero() || (st.Status != StatusSuspended && st.Status != StatusTerminated && st.Status != StatusActive) {
		return st, refuse(ReasonStatementInvalid, "needs at and a status of suspended, terminated or active")
	}
	if !key.ValidAt(st.At) {
		return st, refuse(ReasonKeyRevoked, "key %s revoked at %s, statement at %s", h.Kid, key.RevokedAt.UTC().Format(time.RFC3339), st.At.UTC().Format(time.RFC3339))
	}
	st.By, st.KID = party, h.Kid
	return st, nil
}

// fold applies the statements of a (sorted by At) that took effect by now
// (all of them when now is zero) to its document status, and returns the
// status and the parties whose suspension is in force. An error names the
// first statement against the rules.
func fold(a *Agreement, stmts []Statement, now time.Time) (Status, []string, error) {
	status := a.Status
	var suspenders []string
	if status == StatusSuspended {
		suspenders = []string{a.Parties.Requester, a.Parties.Provider}
	}
	for _, st := range stmts {
		if !now.IsZero() && st.At.After(now) {
			break
		}
		bad := func(why string) (Status, []string, error) {
			return "", nil, refuse(ReasonStatementInvalid, "%s by %s at %s: %s", st.Status, st.By, st.At.UTC().Format(time.RFC3339), why)
		}
		switch status {
		case StatusActive, StatusSuspended:
		default:
			return bad("the agreement is " + string(status))
		}
		switch st.Status {
		case StatusSuspended:
			if !slices.Contains(suspenders, st.By) {
				suspenders = append(suspenders, st.By)
			}
			status = StatusSuspended
		case StatusActive:
			i := slices.Index(suspenders, st.By)
			if i < 0 {
				return bad("only a party that suspended may resume")
			}
			suspenders = slices.Delete(suspenders, i, i+1)
			if len(suspenders) == 0 {
				status = StatusActive
			}
		case StatusTerminated:
			status, suspenders = StatusTerminated, nil
		}
	}
	return status, suspenders, nil
}
