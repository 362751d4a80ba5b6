package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/translog"
)

// Bundle is a receipt with the proof that it is in the broker's
// transparency log: everything a third party needs to check it offline,
// years later, with public keys only. Its JSON form is the receipt bundle
// file (`certless receipt proof` writes it, `certless receipt verify`
// checks it).
type Bundle struct {
	// Receipt is the receipt exactly as published (compact JWS, or JWE for
	// a confidential agency).
	Receipt string `json:"receipt"`
	// Proof is the C2SP tlog-proof of the receipt's leaf (carried as the
	// proof's extra data) against a checkpoint, with its cosignatures.
	Proof string `json:"proof"`
}

// MaxBundleSize bounds a bundle file.
const MaxBundleSize = 1 << 20

// ParseBundle decodes a bundle file.
func ParseBundle(b []byte) (Bundle, error) {
	if len(b) > MaxBundleSize {
		return Bundle{}, fmt.Errorf("client: bundle of %d bytes, more than %d", len(b), MaxBundleSize)
	}
	var out Bundle
	if err := json.Unmarshal(b, &out); err != nil {
		return Bundle{}, fmt.Errorf("client: bundle: %w", err)
	}
	if out.Receipt == "" || out.Proof == "" {
		return Bundle{}, errors.New("client: bundle lacks its receipt or its proof")
	}
	return out, nil
}

// Check is one verdict of VerifyBundle.
type Check struct {
	Name string // "broker signature", "leaf matches receipt", ...
	Err  error  // nil when it passed
	Note string // what passed, e.g. the checkpoint's size
}

// Names of the checks, in the order VerifyBundle makes them.
const (
	CheckSignature   = "broker signature"
	CheckLeaf        = "leaf matches receipt"
	CheckCheckpoint  = "checkpoint signature"
	CheckCosignature = "witness cosignatures"
	CheckInclusion   = "inclusion in checkpoint"
	CheckValidity    = "validity window"
)

// VerifyBundle checks a bundle offline: the broker's signature on the
// receipt, that the logged leaf is this receipt's (its digest, agency,
// query, outcome, reason, request and agreement), that the leaf is included
// in the checkpoint, the checkpoint's log signature and the witnesses'
// cosignatures the policy requires, and the receipt's validity window at
// e.Now. It returns every verdict and the receipt when its signature held;
// the bundle is good when no Check has an error.
func VerifyBundle(b Bundle, broker *Broker, pol translog.Policy, e Expect) ([]Check, *Receipt) {
	var checks []Check
	add := func(name string, err error, note string) { checks = append(checks, Check{name, err, note}) }

	raw := []byte(b.Receipt)
	r, err := verifyReceipt(raw, broker, e, false)
	add(CheckSignature, err, keyNote(r))

	proof, perr := translog.ParseProof([]byte(b.Proof))
	if perr == nil {
		add(CheckLeaf, leafMatches(proof.Leaf, raw, r), fmt.Sprintf("leaf %d", proof.Index))
	} else {
		add(CheckLeaf, perr, "")
	}

	var cp translog.Checkpoint
	var cosigned []string
	if perr == nil {
		cp, cosigned, err = pol.VerifyCheckpoint(proof.Checkpoint)
		switch {
		case err == nil:
			add(CheckCheckpoint, nil, fmt.Sprintf("%s, size %d", cp.Origin, cp.N))
			add(CheckCosignature, nil, fmt.Sprintf("%d of %d required %v", len(cosigned), pol.Quorum, cosigned))
		case cp.Note != nil: // signed by the log, short of cosignatures
			add(CheckCheckpoint, nil, fmt.Sprintf("%s, size %d", cp.Origin, cp.N))
			add(CheckCosignature, err, "")
		default:
			add(CheckCheckpoint, err, "")
			add(CheckCosignature, errors.New("no verified checkpoint to count cosignatures on"), "")
		}
	} else {
		add(CheckCheckpoint, perr, "")
		add(CheckCosignature, perr, "")
	}
	if cp.Note != nil {
		add(CheckInclusion, proof.VerifyInclusion(cp), fmt.Sprintf("index %d of %d", proof.Index, cp.N))
	} else {
		add(CheckInclusion, errors.New("no verified checkpoint to prove inclusion in"), "")
	}

	if r != nil {
		now := e.Now
		if now.IsZero() {
			now = time.Now()
		}
		add(CheckValidity, inWindow(r.Envelope, now), fmt.Sprintf("at %s: issued %s, expires %s", fmtT(now), fmtT(r.Envelope.IssuedAt), fmtT(r.Envelope.ExpiresAt)))
	} else {
		add(CheckValidity, errors.New("no verified receipt"), "")
	}
	return checks, r
}

func keyNote(r *Receipt) string {
	if r == nil {
		return ""
	}
	return r.Envelope.KeyID
}

// ErrLeafMismatch is a logged leaf that is not the receipt's.
var ErrLeafMismatch = errors.New("client: the logged leaf is not this receipt's")

// leafMatches compares the logged leaf with the receipt it should record.
func leafMatches(leaf, raw []byte, r *Receipt) error {
	l, err := translog.ParseLeaf(leaf)
	if err != nil {
		return err
	}
	if l.Kind != translog.KindDecision {
		return fmt.Errorf("%w: leaf of kind %q", ErrLeafMismatch, l.Kind)
	}
	if got := translog.Digest(raw); l.Receipt != got {
		return fmt.Errorf("%w: leaf logs receipt %s, this receipt is %s", ErrLeafMismatch, l.Receipt, got)
	}
	if r == nil {
		return nil // the digest matched; the fields need a verified receipt
	}
	want := map[string][2]string{
		"agency":  {l.Agency, translog.Token(r.RequestAgency)},
		"request": {l.Request, r.RequestDigest},
		"query":   {l.Query, translog.Token(r.Query)},
		"outcome": {l.Outcome, r.Decision},
		"reason":  {l.Reason, translog.Token(r.Reason)},
	}
	if r.Agreement != nil {
		want["agreement"] = [2]string{l.Agreement, r.Agreement.Digest}
	}
	for _, name := range []string{"agency", "request", "query", "outcome", "reason", "agreement"} {
		if p, ok := want[name]; ok && p[0] != p[1] {
			return fmt.Errorf("%w: leaf %s %q, receipt %q", ErrLeafMismatch, name, p[0], p[1])
		}
	}
	return nil
}
