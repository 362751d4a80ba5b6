package feedback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/statuslist"
	"github.com/certless/certless/translog"
)

// Producer publishes outputs; broker.Producer is one.
type Producer interface {
	Produce(ctx context.Context, outs ...broker.Output) error
}

// Leaves appends transparency-log leaves; store.Store is one.
type Leaves interface {
	AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
}

// Headers of the messages Notifier publishes.
const (
	HeaderDispute       = "certless-dispute"
	HeaderDisputeStatus = "certless-dispute-status"
	// HeaderNotice carries, on a dispute forwarded to the data owner, the
	// broker's signed forwarded notice beside the agency's signed dispute.
	HeaderNotice = "certless-notice"
	// HeaderRevoked names the receipt a receipt_revocation notice revokes.
	HeaderRevoked = "certless-revoked"
)

// noticeLifetime bounds a notice's validity.
const noticeLifetime = 90 * 24 * time.Hour

// Notifier moves disputes along and tells their parties: each Round
// forwards every open dispute to its data owner, then signs, logs (a
// "dispute" leaf per step) and publishes the notice of every step not sent
// yet — to the disputing agency's receipts topic, and a forwarded dispute
// (the agency's signed message, the notice in a header) to the data owner's
// dispute topic — and marks it sent. A step is signed once and its stored
// notice is what is (re)sent: delivery is at least once, the bytes always
// the same. Several brokers may run Notifiers on one database.
type Notifier struct {
	Store    *Store
	Keys     broker.SigningKeys
	Schemas  *schemas.Set
	Leaves   Leaves
	Producer Producer
	Topics   broker.Topics
	BrokerID string
	// Encrypt, when set, turns a notice to a confidential agency into a
	// JWE (a resolution may carry a corrected answer).
	Encrypt func(agency string, jws []byte, now time.Time) ([]byte, error)
	// Revoker, when set, revokes the receipts a corrected dispute names
	// (their status lists published under StatusBase) and tells their
	// holders.
	Revoker    Revoker
	StatusBase func() string
	Now        func() time.Time
	Log        *zap.Logger
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now().UTC()
	}
	return time.Now().UTC()
}

// Run calls Round every interval until ctx ends, logging failures (they
// are retried at the next round).
func (n *Notifier) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := n.Round(ctx); err != nil && ctx.Err() == nil && n.Log != nil {
			n.Log.Warn("dispute notices: round failed; retried next round", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round forwards the open disputes and sends every unsent notice.
func (n *Notifier) Round(ctx context.Context) error {
	open, err := n.Store.List(ctx, Filter{Status: schemas.DisputeOpen})
	if err != nil {
		return err
	}
	for _, d := range open {
		if _, err := n.Store.Transition(ctx, d.ID, []string{schemas.DisputeOpen}, schemas.DisputeForwarded, n.BrokerID,
			"forwarded to "+d.Owner, n.now(), nil); err != nil {
			return err
		}
	}
	for {
		evs, err := n.Store.Unsent(ctx, 128)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, ev := range evs {
			if err := n.send(ctx, ev); err != nil {
				return fmt.Errorf("dispute %s step %d: %w", ev.DisputeID, ev.Seq, err)
			}
		}
	}
}

// send signs and logs ev's notice if it has none, then publishes it.
func (n *Notifier) send(ctx context.Context, ev Event) error {
	d, ok, err := n.Store.Dispute(ctx, ev.DisputeID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, ev.DisputeID)
	}
	if ev.Notice == nil {
		notice, err := n.sign(d, ev)
		if err != nil {
			return err
		}
		leaf, err := translog.Leaf{
			Kind: translog.KindDispute, Time: translog.FormatTime(ev.At), Agency: translog.Token(d.Agency),
			Reason: ev.Status, Request: d.Digest, Subject: d.Receipt.Digest, Receipt: translog.Digest(notice),
		}.Marshal()
		if err != nil {
			return err
		}
		idx, err := n.Leaves.AppendLeaf(ctx, "dispute:"+d.ID+":"+strconv.Itoa(ev.Seq), leaf)
		if err != nil {
			return fmt.Errorf("log: %w", err)
		}
		if err := n.Store.SetNotice(ctx, d.ID, ev.Seq, notice, idx); err != nil {
			return err
		}
		// Another broker may have set its notice first: send the stored one.
		evs, err := n.Store.Events(ctx, d.ID)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Seq == ev.Seq {
				ev = e
			}
		}
	}
	var revocations []broker.Output
	if ev.Status == schemas.DisputeCorrected && n.Revoker != nil {
		targets, rs, err := n.revoke(ctx, d, ev.At)
		if err != nil {
			return err
		}
		if revocations, err = n.revocationNotices(d, targets, rs); err != nil {
			return err
		}
	}
	value := ev.Notice
	if n.Encrypt != nil {
		if value, err = n.Encrypt(d.Agency, ev.Notice, n.now()); err != nil {
			return err
		}
	}
	h := map[string]string{HeaderDispute: d.ID, HeaderDisputeStatus: ev.Status, broker.HeaderLogIndex: strconv.FormatInt(ev.LeafIndex, 10)}
	outs := []broker.Output{{Topic: n.Topics.Receipts(d.Agency), Key: []byte(d.ID), Value: value, Headers: h}}
	if ev.Status == schemas.DisputeForwarded {
		fh := map[string]string{HeaderDispute: d.ID, HeaderDisputeStatus: ev.Status, HeaderNotice: string(ev.Notice),
			broker.HeaderLogIndex: strconv.FormatInt(ev.LeafIndex, 10)}
		outs = append(outs, broker.Output{Topic: n.Topics.Disputes(d.Owner), Key: []byte(d.ID), Value: d.Message, Headers: fh})
	}
	outs = append(outs, revocations...)
	if err := n.Producer.Produce(ctx, outs...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := n.Store.MarkSent(ctx, d.ID, ev.Seq, n.now()); err != nil {
		return err
	}
	if n.Log != nil {
		n.Log.Info("dispute step sent", zap.String("dispute", d.ID), zap.String("status", ev.Status),
			zap.String("agency", d.Agency), zap.String("owner", d.Owner), zap.Int64("leaf", ev.LeafIndex))
	}
	return nil
}

// sign builds and signs the dispute_status notice of ev.
func (n *Notifier) sign(d Dispute, ev Event) ([]byte, error) {
	due := d.Due
	body, err := json.Marshal(schemas.DisputeStatus{
		Dispute: schemas.MessageRef{ID: d.ID, Digest: d.Digest}, Disputant: d.Agency, Receipt: d.Receipt,
		Status: ev.Status, At: ev.At, Due: &due, Owner: d.Owner, Resolution: d.Resolution,
	})
	if err != nil {
		return nil, err
	}
	return n.signPayload(schemas.TypeDisputeStatus, ulid.Make().String(), n.now(), envelope.Purpose{Basis: "dispute", CaseRef: d.ID}, body)
}

// signPayload signs a broker message of type typ with id, issued at now,
// valid against its schema.
func (n *Notifier) signPayload(typ, id string, now time.Time, purpose envelope.Purpose, body []byte) ([]byte, error) {
	p := envelope.Payload{
		Type: typ, ID: id, Agency: n.BrokerID,
		IssuedAt: now, ExpiresAt: now.Add(noticeLifetime), Purpose: purpose, Body: body,
	}
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := n.Schemas.Validate(typ+".v1", doc); err != nil {
		return nil, fmt.Errorf("%s breaks its schema: %w", typ, err)
	}
	return envelope.Sign(n.Keys.SigningKey(), p)
}

// Revoker is what revocation needs of the decision store; store.Store is
// one.
type Revoker interface {
	ByReceipt(ctx context.Context, receiptID string) (store.Decision, bool, error)
	BySubject(ctx context.Context, key string) ([]store.Decision, error)
	Revoke(ctx context.Context, rs ...store.Revocation) error
	Revocations(ctx context.Context, from, to int64) ([]store.Revocation, error)
}

// ReasonCorrected is the revocation reason of a receipt whose answer a
// dispute corrected.
const ReasonCorrected = "corrected"

// revoke revokes every receipt that carried the answer dispute d
// corrected: the disputed one and every other answered receipt of the same
// query about the same subject decided before the correction (found by the
// subject key, whoever asked), logs the new version of each list that
// changed, and returns the revoked decisions.
func (n *Notifier) revoke(ctx context.Context, d Dispute, at time.Time) ([]store.Decision, []store.Revocation, error) {
	rec, ok, err := n.Revoker.ByReceipt(ctx, d.Receipt.ID)
	if err != nil || !ok {
		return nil, nil, fmt.Errorf("revoke: the disputed receipt %s: found %v, %v", d.Receipt.ID, ok, err)
	}
	targets := []store.Decision{rec}
	if rec.SubjectKey != "" {
		same, err := n.Revoker.BySubject(ctx, rec.SubjectKey)
		if err != nil {
			return nil, nil, err
		}
		for _, o := range same {
			if o.Digest != rec.Digest && o.Outcome == store.Answered && o.QueryType == rec.QueryType && !o.DecidedAt.After(at) {
				targets = append(targets, o)
			}
		}
	}
	var rs []store.Revocation
	lists := map[int64]bool{}
	for _, t := range targets {
		if t.StatusIndex < 0 {
			continue // issued before status lists
		}
		rs = append(rs, store.Revocation{StatusIndex: t.StatusIndex, ReceiptID: t.ReceiptID, Agency: t.Agency,
			Reason: ReasonCorrected, DisputeID: d.ID, At: at})
		lists[t.StatusIndex/statuslist.Size] = true
	}
	if err := n.Revoker.Revoke(ctx, rs...); err != nil {
		return nil, nil, err
	}
	for list := range lists {
		revs, err := n.Revoker.Revocations(ctx, list*statuslist.Size, (list+1)*statuslist.Size)
		if err != nil {
			return nil, nil, err
		}
		bits := statuslist.NewBits()
		for _, r := range revs {
			bits.Set(int(r.StatusIndex % statuslist.Size))
		}
		leaf, err := translog.Leaf{Kind: translog.KindStatusList, Time: translog.FormatTime(at), Reason: "revocation",
			Subject: translog.Digest([]byte(bits.Encode())), Request: d.Digest}.Marshal()
		if err != nil {
			return nil, nil, err
		}
		if _, err := n.Leaves.AppendLeaf(ctx, fmt.Sprintf("status_list:%d:%d", list, len(revs)), leaf); err != nil {
			return nil, nil, fmt.Errorf("log status list %d: %w", list, err)
		}
	}
	return targets, rs, nil
}

// revocationNotices are the signed receipt_revocation notices of rs, one
// to each receipt's holder.
func (n *Notifier) revocationNotices(d Dispute, targets []store.Decision, rs []store.Revocation) ([]broker.Output, error) {
	byIndex := map[int64]store.Decision{}
	for _, t := range targets {
		byIndex[t.StatusIndex] = t
	}
	var outs []broker.Output
	for _, r := range rs {
		t := byIndex[r.StatusIndex]
		e := statuslist.NewEntry(n.StatusBase(), r.StatusIndex)
		body, err := json.Marshal(schemas.ReceiptRevocation{
			Receipt: schemas.MessageRef{ID: t.ReceiptID, Digest: t.ReceiptDigest}, Holder: t.Agency, Reason: r.Reason,
			Dispute: &schemas.MessageRef{ID: d.ID, Digest: d.Digest}, RevokedAt: r.At,
			StatusListCredential: e.StatusListCredential, StatusListIndex: e.StatusListIndex,
		})
		if err != nil {
			return nil, err
		}
		// Id and time follow from the revocation, so a resent notice is
		// the same payload (and, with EdDSA, the same bytes).
		at := r.At.UTC().Truncate(time.Second)
		seed := sha256.Sum256([]byte(d.ID + "\x00" + strconv.FormatInt(r.StatusIndex, 10)))
		id, err := ulid.New(ulid.Timestamp(at), bytes.NewReader(seed[:]))
		if err != nil {
			return nil, err
		}
		jws, err := n.signPayload(schemas.TypeReceiptRevocation, id.String(), at, envelope.Purpose{Basis: "revocation", CaseRef: d.ID}, body)
		if err != nil {
			return nil, err
		}
		value := jws
		if n.Encrypt != nil {
			if value, err = n.Encrypt(t.Agency, jws, n.now()); err != nil {
				return nil, err
			}
		}
		outs = append(outs, broker.Output{Topic: n.Topics.Receipts(t.Agency), Key: []byte(t.ReceiptID), Value: value,
			Headers: map[string]string{HeaderRevoked: t.ReceiptID, HeaderDispute: d.ID}})
	}
	return outs, nil
}
