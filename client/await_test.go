package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
)

// feed is a records source that returns its records in order, then io.EOF.
type feed []Record

func (f *feed) Next(ctx context.Context) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	if len(*f) == 0 {
		return Record{}, io.EOF
	}
	r := (*f)[0]
	*f = (*f)[1:]
	return r, nil
}

func (w *world) watcher(recs ...Record) (*Watcher, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	c := &Client{Broker: w.b, Agency: "court-changchun", Decrypt: w.enc, Log: zap.New(core)}
	f := feed(recs)
	return &Watcher{c: c, src: &f}, logs
}

func record(offset int64, value []byte, digest string) Record {
	h := map[string]string{}
	if digest != "" {
		h[headerRequestDigest] = digest
	}
	return Record{Topic: "certless.court-changchun.receipts", Offset: offset, Key: []byte(fmt.Sprintf("req-%d", offset)), Value: value, Headers: h}
}

func TestAwaitSkipsBadRecords(t *testing.T) {
	w := newWorld(t)
	good := w.receipt(t, w.broker, nil)
	forged := w.receipt(t, w.court, nil) // a receipt-shaped message signed by an agency
	garbage := []byte("not a receipt at all")
	wt, logs := w.watcher(
		record(0, garbage, w.req.Digest),
		record(1, forged, w.req.Digest),
		record(2, w.receipt(t, w.broker, nil), envelope.DigestOf([]byte("another client's request"))), // not ours: passed over
		record(3, good, w.req.Digest),
	)
	got, err := wt.Await(context.Background(), map[string]string{w.req.Digest: w.req.ID})
	if err != nil {
		t.Fatal(err)
	}
	if r := got[w.req.Digest]; r == nil || string(r.Raw) != string(good) {
		t.Fatalf("got %v, want the good receipt", got)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 2 || logs.Len() != 2 {
		t.Fatalf("%d log entries (%d warnings), want one warning per bad record: %v", logs.Len(), len(warns), logs.All())
	}
	for i, want := range []struct {
		offset int64
		in     string
	}{{0, "malformed"}, {1, "unknown_key"}} {
		f := warns[i].ContextMap()
		if f["offset"] != want.offset || f["topic"] != "certless.court-changchun.receipts" || f["key"] == "" {
			t.Errorf("warning %d fields %v", i, f)
		}
		if e, _ := f["error"].(string); !strings.Contains(e, want.in) {
			t.Errorf("warning %d error %q, want it to say %q", i, e, want.in)
		}
		for k, v := range f {
			if s, _ := v.(string); strings.Contains(s, string(garbage)) || strings.Contains(s, string(forged)) {
				t.Errorf("warning %d logs the record value in %s", i, k)
			}
		}
	}
}

func TestAwaitChecksTheRequest(t *testing.T) {
	w := newWorld(t)
	other, err := Build(w.court, Request{Query: "identity", Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis: "criminal-proceedings", CaseRef: "CASE-2"}, w.now)
	if err != nil {
		t.Fatal(err)
	}
	answer := func(s Signed, agency string) []byte {
		return w.receipt(t, w.broker, func(_ *envelope.Payload, r *schemas.Receipt) {
			r.RequestID, r.RequestDigest, r.RequestAgency = s.ID, s.Digest, agency
		})
	}
	jwe, err := envelope.EncryptTo(answer(other, "court-changchun"), w.enc.Public)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{w.req.Digest: w.req.ID, other.Digest: other.ID}
	wt, logs := w.watcher(
		record(0, answer(w.req, "notary-dunhua"), w.req.Digest),   // another agency's request
		record(1, answer(other, "court-changchun"), w.req.Digest), // header and body disagree
		record(2, answer(w.req, "court-changchun"), ""),           // no header: the body names it
		record(3, jwe, other.Digest),                              // encrypted
	)
	got, err := wt.Await(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[w.req.Digest].RequestAgency != "court-changchun" || got[other.Digest].RequestDigest != other.Digest {
		t.Fatalf("got %v", got)
	}
	if logs.Len() != 2 {
		t.Errorf("%d warnings, want 2: %v", logs.Len(), logs.All())
	}
	for _, e := range logs.All() {
		if s, _ := e.ContextMap()["error"].(string); !strings.Contains(s, "answers another request") {
			t.Errorf("warning %q", s)
		}
	}
}

func TestAwaitConflictingReceipts(t *testing.T) {
	w := newWorld(t)
	first := w.receipt(t, w.broker, nil)
	other, err := Build(w.court, Request{Query: "identity", Subject: schemas.Subject{IDNumber: "222403199001011233", Name: "张伟"},
		Basis: "criminal-proceedings", CaseRef: "CASE-2"}, w.now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{w.req.Digest: w.req.ID, other.Digest: other.ID}
	wt, _ := w.watcher(
		record(0, first, w.req.Digest),
		record(1, first, w.req.Digest), // redelivered: ignored
		record(2, w.receipt(t, w.broker, nil), w.req.Digest),
	)
	got, err := wt.Await(context.Background(), want)
	if !errors.Is(err, ErrConflictingReceipts) {
		t.Fatalf("err %v, want ErrConflictingReceipts", err)
	}
	if len(got) != 1 {
		t.Errorf("got %d receipts before the conflict, want 1", len(got))
	}
}

func TestAwaitEnds(t *testing.T) {
	w := newWorld(t)
	wt, _ := w.watcher(record(0, []byte("garbage"), ""))
	if _, err := wt.Await(context.Background(), map[string]string{w.req.Digest: w.req.ID}); !errors.Is(err, io.EOF) {
		t.Errorf("read error: %v, want io.EOF", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := wt.Await(ctx, map[string]string{w.req.Digest: w.req.ID}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	wt.c.Broker = nil
	if _, err := wt.Await(context.Background(), map[string]string{w.req.Digest: w.req.ID}); err == nil {
		t.Errorf("Await without a Broker did not fail")
	}
}
