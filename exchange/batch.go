// Package exchange is periodic exchange (定期交换): the police side pushes
// the records that changed during a period — the day's hukou cancellations,
// say — to the agency an agreement's schedule names, as a batch of signed
// batch_record messages closed by a signed batch_manifest. The manifest
// names the agreement, the period, the batch's sequence number, the record
// count, the digest of the records and their RFC 6962 Merkle tree hash, so
// a receiver can prove it holds every part and that each belongs.
//
// A batch is a function of its agreement, schedule, period and the records:
// message ids derive from the agreement and sequence, times from the
// period, and EdDSA signatures are deterministic, so building the same
// period again gives the same bytes.
package exchange

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// Spec says which batch to build.
type Spec struct {
	Agreement schemas.AgreementRef
	// Schedule names the agreement's schedule; Recipient is the agency the
	// batch goes to.
	Schedule, Recipient string
	Type                adapters.QueryType
	// Region is the jurisdiction whose residents' changes are sent.
	Region string
	// From and To bound the period [From, To).
	From, To time.Time
	// Sequence is the batch's number within the schedule (1 for the
	// first period).
	Sequence int
	// Fields are the agreement's fields for the type (nil: every
	// documented field).
	Fields []string
	// Purpose is the agreement's purpose the exchange serves.
	Purpose string
}

// Batch is a built batch: the signed records in index order and the
// signed manifest.
type Batch struct {
	Records  [][]byte
	Manifest []byte
	// ID is the manifest's message id, derived from agreement, schedule
	// and sequence.
	ID string
}

// lifetime bounds a batch's messages.
const lifetime = 90 * 24 * time.Hour

// MaxRecords bounds one batch (the manifest schema's count).
const MaxRecords = 1000000

// Record is the body of a batch_record.
type Record struct {
	AgreementID string           `json:"agreement_id"`
	Sequence    int              `json:"sequence"`
	Index       int              `json:"index"`
	RecordType  string           `json:"record_type"`
	Subject     adapters.Subject `json:"subject"`
	Data        map[string]any   `json:"data"`
}

// Manifest is the body of a batch_manifest.
type Manifest struct {
	Agreement  schemas.AgreementRef `json:"agreement"`
	Recipient  string               `json:"recipient"`
	RecordType string               `json:"record_type"`
	Period     struct {
		From time.Time `json:"from"`
		To   time.Time `json:"to"`
	} `json:"period"`
	Sequence   int    `json:"sequence"`
	Count      int    `json:"count"`
	Parts      int    `json:"parts"`
	Digest     string `json:"digest"`
	MerkleRoot string `json:"merkle_root"`
}

// Build reads every change of the period from feed, minimises each answer
// to the spec's fields, and signs the records and the manifest with the
// broker's key as brokerID.
func Build(ctx context.Context, feed adapters.ChangeFeed, spec Spec, brokerID string, key *keys.Private, set *schemas.Set) (Batch, error) {
	if spec.Sequence < 1 || !spec.From.Before(spec.To) {
		return Batch{}, fmt.Errorf("exchange: sequence %d, period [%s, %s)", spec.Sequence, spec.From, spec.To)
	}
	// The feed's period is (after, until]; the batch's [From, To): a day's
	// events belong to the period that contains the day's start.
	q := adapters.ChangeQuery{Type: spec.Type, Region: spec.Region, After: spec.From.Add(-time.Nanosecond), Until: spec.To.Add(-time.Nanosecond)}
	var changes []adapters.Change
	for {
		page, err := feed.Changes(ctx, q)
		if err != nil {
			return Batch{}, fmt.Errorf("exchange: changes: %w", err)
		}
		changes = append(changes, page.Changes...)
		if len(changes) > MaxRecords {
			return Batch{}, fmt.Errorf("exchange: more than %d records in one period", MaxRecords)
		}
		if !page.More {
			break
		}
		q.Cursor = page.Next
	}
	purpose := envelope.Purpose{Basis: spec.Purpose, CaseRef: spec.Agreement.ID + "/" + spec.Schedule}
	if purpose.Basis == "" {
		purpose.Basis = "periodic-exchange"
	}
	issued := spec.To.UTC()
	sign := func(typ, id string, body any) ([]byte, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		p := envelope.Payload{Type: typ, ID: id, Agency: brokerID, IssuedAt: issued, ExpiresAt: issued.Add(lifetime), Purpose: purpose, Body: b}
		doc, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if err := set.Validate(typ+".v1", doc); err != nil {
			return nil, fmt.Errorf("exchange: %s breaks its schema: %w", typ, err)
		}
		return envelope.Sign(key, p)
	}
	b := Batch{ID: messageID(spec, -1, issued)}
	for i, c := range changes {
		data := broker.Minimise(spec.Type, c.Answer.Fields, spec.Fields)
		rec, err := sign(schemas.TypeBatchRecord, messageID(spec, i, issued), Record{
			AgreementID: spec.Agreement.ID, Sequence: spec.Sequence, Index: i, RecordType: string(spec.Type),
			Subject: c.Subject, Data: data,
		})
		if err != nil {
			return Batch{}, fmt.Errorf("exchange: record %d: %w", i, err)
		}
		b.Records = append(b.Records, rec)
	}
	m := Manifest{Agreement: spec.Agreement, Recipient: spec.Recipient, RecordType: string(spec.Type), Sequence: spec.Sequence,
		Count: len(b.Records), Parts: len(b.Records), Digest: RecordsDigest(b.Records), MerkleRoot: MerkleRoot(b.Records)}
	m.Period.From, m.Period.To = spec.From.UTC(), spec.To.UTC()
	var err error
	if b.Manifest, err = sign(schemas.TypeBatchManifest, b.ID, m); err != nil {
		return Batch{}, fmt.Errorf("exchange: manifest: %w", err)
	}
	return b, nil
}

// messageID is the id of record i of the batch (-1: the manifest): a ULID
// whose time is the period's end and whose entropy derives from agreement,
// schedule, sequence and index.
func messageID(spec Spec, i int, at time.Time) string {
	seed := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", spec.Agreement.ID, spec.Schedule, spec.Sequence, i))
	id, _ := ulid.New(ulid.Timestamp(at), bytes.NewReader(seed[:]))
	return id.String()
}

// RecordsDigest is the manifest's digest: SHA-256 over each record's
// "sha256:<hex>" digest followed by a newline, in index order.
func RecordsDigest(records [][]byte) string {
	h := sha256.New()
	for _, r := range records {
		h.Write([]byte(envelope.DigestOf(r) + "\n"))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// MerkleRoot is the RFC 6962 Merkle tree hash of the records (each leaf a
// record's JWS bytes), "sha256:<hex>"; the empty tree's is SHA-256 of "".
func MerkleRoot(records [][]byte) string {
	var mth func(rs [][]byte) tlog.Hash
	mth = func(rs [][]byte) tlog.Hash {
		switch len(rs) {
		case 0:
			return tlog.Hash(sha256.Sum256(nil))
		case 1:
			return tlog.RecordHash(rs[0])
		}
		k := 1
		for k*2 < len(rs) {
			k *= 2
		}
		return tlog.NodeHash(mth(rs[:k]), mth(rs[k:]))
	}
	h := mth(records)
	return "sha256:" + hex.EncodeToString(h[:])
}

// ParseManifest reads the body of a signed manifest this broker stored
// (no signature check: for a verified batch, see Verify).
func ParseManifest(jws []byte) (Manifest, error) {
	var m Manifest
	parts := bytes.Split(jws, []byte("."))
	if len(parts) != 3 {
		return m, errors.New("exchange: manifest is not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.AppendDecode(nil, parts[1])
	if err != nil {
		return m, fmt.Errorf("exchange: manifest: %w", err)
	}
	var p envelope.Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return m, fmt.Errorf("exchange: manifest: %w", err)
	}
	if err := json.Unmarshal(p.Body, &m); err != nil {
		return m, fmt.Errorf("exchange: manifest: %w", err)
	}
	return m, nil
}

// ErrBatch is wrapped by every verification failure.
var ErrBatch = errors.New("exchange: batch does not verify")

// Verified is a batch that verified.
type Verified struct {
	Manifest Manifest
	Records  []Record
	// Stream names the schedule: "<agreement>/<schedule>", from the
	// manifest's signed case reference.
	Stream string
}

// Verify checks a received batch offline: the manifest's and every
// record's signature by the broker's keys, that every record names the
// manifest's agreement, type and sequence, that the indexes run 0..count-1
// without a gap or a repeat, and that the count, the digest and the Merkle
// root are the manifest's. A want sequence above 0 must be the manifest's
// (a replayed old batch fails). The error names the first part that fails.
func Verify(manifest []byte, records [][]byte, resolver envelope.KeyResolver, set *schemas.Set, wantSequence int) (Verified, error) {
	return verify(manifest, records, resolver, set, wantSequence, func(n int) string { return fmt.Sprintf("part %d (file order)", n) })
}

// verify is Verify naming the nth of records by part.
func verify(manifest []byte, records [][]byte, resolver envelope.KeyResolver, set *schemas.Set, wantSequence int, part func(n int) string) (Verified, error) {
	mv, err := envelope.VerifyOffline(manifest, resolver, set)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: manifest: %w", ErrBatch, err)
	}
	if mv.Type != schemas.TypeBatchManifest {
		return Verified{}, fmt.Errorf("%w: manifest is a %s", ErrBatch, mv.Type)
	}
	out := Verified{Stream: mv.Purpose.CaseRef}
	if err := json.Unmarshal(mv.Body, &out.Manifest); err != nil {
		return Verified{}, fmt.Errorf("%w: manifest: %w", ErrBatch, err)
	}
	m := out.Manifest
	if wantSequence > 0 && m.Sequence != wantSequence {
		return Verified{}, fmt.Errorf("%w: manifest is batch %d, expected %d (a replayed or skipped batch)", ErrBatch, m.Sequence, wantSequence)
	}
	byIndex := make([][]byte, m.Count)
	for n, raw := range records {
		v, err := envelope.VerifyOffline(raw, resolver, set)
		if err != nil {
			return Verified{}, fmt.Errorf("%w: %s: %w", ErrBatch, part(n), err)
		}
		var r Record
		if v.Type != schemas.TypeBatchRecord || json.Unmarshal(v.Body, &r) != nil || v.Agency != mv.Agency {
			return Verified{}, fmt.Errorf("%w: %s is not a record of this broker", ErrBatch, part(n))
		}
		switch {
		case r.AgreementID != m.Agreement.ID || r.Sequence != m.Sequence || r.RecordType != m.RecordType:
			return Verified{}, fmt.Errorf("%w: record %d belongs to %s batch %d, not %s batch %d", ErrBatch, r.Index, r.AgreementID, r.Sequence, m.Agreement.ID, m.Sequence)
		case r.Index < 0 || r.Index >= m.Count:
			return Verified{}, fmt.Errorf("%w: record %d outside the manifest's %d", ErrBatch, r.Index, m.Count)
		case byIndex[r.Index] != nil:
			return Verified{}, fmt.Errorf("%w: record %d twice", ErrBatch, r.Index)
		}
		byIndex[r.Index] = raw
		out.Records = append(out.Records, r)
	}
	for i, raw := range byIndex {
		if raw == nil {
			return Verified{}, fmt.Errorf("%w: record %d of %d is missing", ErrBatch, i, m.Count)
		}
	}
	if d := RecordsDigest(byIndex); d != m.Digest {
		return Verified{}, fmt.Errorf("%w: records digest %s, the manifest's %s", ErrBatch, d, m.Digest)
	}
	if r := MerkleRoot(byIndex); r != m.MerkleRoot {
		return Verified{}, fmt.Errorf("%w: Merkle root %s, the manifest's %s", ErrBatch, r, m.MerkleRoot)
	}
	return out, nil
}
