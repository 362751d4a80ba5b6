package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// journalCancellations are the IDs of the persons of the dev records whose
// registration in a region under prefix was cancelled on day (YYYY-MM-DD).
func journalCancellations(t *testing.T, prefix string) map[string][]string {
	t.Helper()
	g := records.NewGenerator(devSeed, devPersons)
	byDay := map[string][]string{}
	for {
		b, ok := g.Next()
		if !ok {
			break
		}
		add(byDay, b, prefix)
	}
	for _, b := range g.Journal(time.Now().In(exchange.Beijing)) {
		add(byDay, b, prefix)
	}
	return byDay
}

func add(byDay map[string][]string, b records.Batch, prefix string) {
	region := map[string]string{}
	for _, h := range b.Households {
		region[h.ID] = h.RegionCode
	}
	for _, p := range b.Persons {
		if p.CancelReason != "" && strings.HasPrefix(region[p.HouseholdID], prefix) {
			d := p.CancelDate.Format(records.DateLayout)
			byDay[d] = append(byDay[d], p.IDNumber)
		}
	}
}

// batchesOn reads a batches topic from its start and verifies it as a
// receiver does.
func batchesOn(ctx context.Context, t *testing.T, cfg *config.Config, topic string) ([]exchange.StreamBatch, []client.Record) {
	t.Helper()
	recs, err := client.ReadTopic(ctx, kafkaConfig(cfg.Kafka), topic, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := batchParts(recs)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := brokerKeysFor(cfg, "", "")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := schemas.Default()
	bs, pending, err := exchange.VerifyStream(parts, bk, set, 0)
	if err != nil || len(pending) != 0 {
		t.Fatalf("the batches topic does not verify: %v (pending %v)", err, pending)
	}
	return bs, recs
}

// TestRealKafkaExchangeScheduler: the broker's scheduler, on the real Kafka
// and PostgreSQL with its clock injected, builds the daily batch of
// Baicheng's hukou cancellations for each period that ended within the
// catch-up window, with exactly that day's cancellations; offers again,
// the same bytes, the batches not acknowledged past the deadline (and
// counts them overdue); a broker restarted after a stop longer than the
// catch-up window sends every missed period, in order; and two brokers
// running one period at once build and publish it once.
func TestRealKafkaExchangeScheduler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	cfg.Exchange.CatchUp = config.Duration(3 * 24 * time.Hour)
	cfg.Exchange.AckDeadline = config.Duration(6 * time.Hour)
	const job = "social-security-baicheng/records/daily-cancellations"
	topic := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}.Batches("social-security-baicheng")
	want := journalCancellations(t, "2208")
	clock := &testClock{now: time.Date(2026, 9, 10, 12, 0, 0, 0, exchange.Beijing)}
	opts := serviceOptions{httpAddr: "127.0.0.1:0", exchangeClock: clock.Now}

	runCtx, stop := context.WithCancel(ctx)
	svc, done := startStoppable(runCtx, t, cfg, opts)
	round := func(svc *service, wantBuilt, wantOffered, wantReoffered int) {
		t.Helper()
		var total exchange.RoundResult
		for {
			res, err := svc.scheduler.Round(ctx)
			if err != nil {
				t.Fatalf("round at %s: %v", clock.Now(), err)
			}
			total.Built, total.Offered, total.Reoffered = total.Built+res.Built, total.Offered+res.Offered, total.Reoffered+res.Reoffered
			if !res.More {
				break
			}
		}
		if total.Built != wantBuilt || total.Offered != wantOffered || total.Reoffered != wantReoffered {
			t.Fatalf("round at %s: %+v, want built %d, offered %d, offered again %d", clock.Now(), total, wantBuilt, wantOffered, wantReoffered)
		}
	}
	checkRecords := func(bs []exchange.StreamBatch) {
		t.Helper()
		for _, b := range bs {
			m := b.Manifest
			// Each period [D-1 01:00, D 01:00) carries day D's changes.
			day := m.Period.To.In(exchange.Beijing).Format(records.DateLayout)
			var got []string
			for _, r := range b.Records {
				got = append(got, r.Subject.IDNumber)
				if r.Data["cancelled"] != true || r.Data["reason"] != "death" || r.Data["date"] != day {
					t.Errorf("batch %d record %d: %v", m.Sequence, r.Index, r.Data)
				}
			}
			sort.Strings(got)
			exp := append([]string(nil), want[day]...)
			sort.Strings(exp)
			if strings.Join(got, ",") != strings.Join(exp, ",") || len(exp) == 0 {
				t.Errorf("batch %d (%s): subjects %v, want %v", m.Sequence, day, got, exp)
			}
		}
	}

	// First run: the three periods that ended within three days.
	round(svc, 3, 3, 0)
	bs, _ := batchesOn(ctx, t, cfg, topic)
	if len(bs) != 3 {
		t.Fatalf("%d batches published, want 3", len(bs))
	}
	ps, _ := exchange.Periods("0 1 * * *", time.Date(2026, 1, 1, 0, 0, 0, 0, exchange.Beijing), time.Date(2028, 1, 1, 0, 0, 0, 0, exchange.Beijing), clock.Now())
	for i, b := range bs {
		if p := ps[len(ps)-3+i]; b.Manifest.Sequence != p.Sequence || !b.Manifest.Period.To.Equal(p.To) || b.Stream != "social-security-baicheng/records/daily-cancellations" {
			t.Fatalf("batch %d: sequence %d [%s, %s) of %s, want %+v", i, b.Manifest.Sequence, b.Manifest.Period.From, b.Manifest.Period.To, b.Stream, p)
		}
	}
	checkRecords(bs)
	first := bs
	// Nothing more is due in the same period.
	round(svc, 0, 0, 0)

	// The recipient acknowledges the first; seven hours on, the other two
	// are offered again, the same bytes, and count as overdue.
	if _, err := svc.batches.Ack(ctx, first[0].ID, envelope.DigestOf(first[0].ManifestJWS), "social-security-baicheng", clock.Now()); err != nil {
		t.Fatal(err)
	}
	before := scrapeFamilies(ctx, t, "http://"+svc.httpAddr()+"/metrics")
	clock.advance(7 * time.Hour) // 19:00, before the next period ends at 01:00
	round(svc, 0, 0, 2)
	bs, recs := batchesOn(ctx, t, cfg, topic)
	if len(bs) != 3 || bs[0].Offers != 1 || bs[1].Offers != 2 || bs[2].Offers != 2 {
		t.Fatalf("after the deadline: %d batches, offers %d %d %d", len(bs), bs[0].Offers, bs[1].Offers, bs[2].Offers)
	}
	if g := gauge(t, svc.registry, "certless_exchange_overdue", map[string]string{"schedule": job}); g != 2 {
		t.Fatalf("certless_exchange_overdue %v, want 2", g)
	}
	// The alert of deploy/prometheus/alerts.yml fires on this scrape, not
	// on the one before the deadline.
	expr := alertExpr(t, "CertlessExchangeUnacknowledged")
	prom := newPromStore(t)
	target := scrapeTarget{job: "certless", instance: svc.httpAddr()}
	t1 := time.Now().Truncate(time.Second)
	prom.add(t, t1.Add(-time.Minute), target, before)
	if v := prom.eval(ctx, t, expr, t1.Add(-time.Minute)); len(v) != 0 {
		t.Fatalf("CertlessExchangeUnacknowledged fires before the deadline: %v", v)
	}
	prom.add(t, t1, target, scrapeFamilies(ctx, t, "http://"+svc.httpAddr()+"/metrics"))
	if v := prom.eval(ctx, t, expr, t1); len(v) != 1 || v[0].Metric.Get("schedule") != job || v[0].Metric.Get("recipient") != "social-security-baicheng" {
		t.Fatalf("CertlessExchangeUnacknowledged at the deadline: %v", v)
	}
	// The manifest is a transparency-log leaf (a key logged returns the
	// index it holds).
	probe, _ := translog.Leaf{Kind: translog.KindBatchManifest, Time: translog.FormatTime(clock.Now())}.Marshal()
	idx, err := svc.store.AppendLeaf(ctx, "batch:"+first[1].ID, probe)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := svc.store.ReadLeaves(ctx, idx, 1)
	if err != nil || len(leaves) != 1 {
		t.Fatal(err)
	}
	if l, err := translog.ParseLeaf(leaves[0]); err != nil || l.Kind != translog.KindBatchManifest || l.Receipt != envelope.DigestOf(first[1].ManifestJWS) ||
		l.Subject != first[1].Manifest.MerkleRoot || l.Agency != "social-security-baicheng" {
		t.Fatalf("the manifest's leaf: %+v %v", l, err)
	}
	published := len(recs)

	// A long stop: ten days, more than the catch-up window. The restarted
	// broker sends all ten periods, in order.
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * 24 * time.Hour)
	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	svc, done = startStoppable(runCtx, t, cfg, opts)
	round(svc, 10, 10, 2) // and the two still unacknowledged, again
	bs, recs = batchesOn(ctx, t, cfg, topic)
	if len(bs) != 13 || bs[12].Manifest.Sequence != first[0].Manifest.Sequence+12 {
		t.Fatalf("after the stop: %d batches, last %d", len(bs), bs[len(bs)-1].Manifest.Sequence)
	}
	checkRecords(bs[3:])
	if len(recs) <= published {
		t.Fatal("nothing published after the restart")
	}

	// Two brokers, one period: one batch, published once.
	other, otherDone := startStoppable(runCtx, t, cfg, opts)
	clock.advance(24 * time.Hour)
	var wg sync.WaitGroup
	results := make([]exchange.RoundResult, 2)
	for i, s := range []*service{svc, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.scheduler.Round(ctx)
			if err != nil {
				t.Errorf("broker %d: %v", i, err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if n := results[0].Offered + results[1].Offered; n != 1 {
		t.Fatalf("two brokers published the new period %d times: %+v", n, results)
	}
	bs, _ = batchesOn(ctx, t, cfg, topic)
	if len(bs) != 14 || bs[13].Offers != 1 {
		t.Fatalf("after two brokers: %d batches, the last offered %d times", len(bs), bs[len(bs)-1].Offers)
	}

	// A receiver's check of the whole topic with the CLI: it passes; it
	// names a replayed old batch given the sequence it expects; and it
	// names a part published again with other bytes.
	path := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "--config", path, "exchange", "verify", "--topic", topic)
	if code != exitOK || !strings.Contains(out, "14 batches verified") {
		t.Fatalf("verify --topic: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "--config", path, "exchange", "verify", "--topic", topic, "--sequence", fmt.Sprint(bs[0].Manifest.Sequence+1))
	if code == exitOK || !strings.Contains(errOut, "a replayed old batch") {
		t.Fatalf("verify --topic expecting a later batch: %d %s", code, errOut)
	}
	var rec0 client.Record
	for _, r := range recs {
		if r.Headers["certless-batch"] == bs[0].ID && r.Headers["certless-batch-index"] == "0" {
			rec0 = r
		}
	}
	forged := append([]byte{}, rec0.Value...)
	forged[len(forged)-5] ^= 1
	prod, err := bkafka.NewProducer(kafkaConfig(cfg.Kafka), bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, bkafka.Message{Topic: topic, Key: rec0.Key, Value: forged, Headers: []bkafka.Header{
		{Key: "certless-batch", Value: []byte(bs[0].ID)}, {Key: "certless-batch-index", Value: []byte("0")}}}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "--config", path, "exchange", "verify", "--topic", topic)
	if code == exitOK || !strings.Contains(errOut, "batch "+bs[0].ID+" record 0 published again with other bytes") {
		t.Fatalf("verify --topic after a forged copy: %d %s", code, errOut)
	}
	stop()
	<-done
	<-otherDone
}

// startStoppable starts a broker that runs until ctx ends; done reports
// how it stopped.
func startStoppable(ctx context.Context, t *testing.T, cfg *config.Config, opts serviceOptions) (*service, chan error) {
	t.Helper()
	svc, err := startService(ctx, cfg, zap.NewNop(), opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.run(ctx) }()
	return svc, done
}
