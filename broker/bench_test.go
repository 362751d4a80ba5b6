package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/go-jose/go-jose/v4"
)

// benchParallelism is goroutines per GOMAXPROCS in the parallel
// sub-benchmarks: enough waiting Saves to fill group-commit batches, as the
// Runner's in-flight window (default 256) does in production.
const benchParallelism = 64

// benchRig is the test fixture with its decision store in a WAL file
// (synchronous=FULL) with the default group commit, so Saves pay for real
// fsyncs.
type benchRig struct {
	*fixture
	topic    string
	subjects []schemas.Subject
}

func newBenchRig(b *testing.B) *benchRig {
	b.Helper()
	f := newFixtureWithStore(b, filepath.Join(b.TempDir(), "decisions.db"))
	r := &benchRig{fixture: f, topic: f.topics.Requests("court-changchun")}
	for _, p := range f.ds.Persons {
		if p.CancelReason == "" {
			r.subjects = append(r.subjects, schemas.Subject{IDNumber: p.IDNumber, Name: p.Name})
		}
	}
	return r
}

// sign pre-signs n distinct answerable requests.
func (r *benchRig) signMany(b *testing.B, n int) [][]byte {
	b.Helper()
	queries := []string{"criminal_record", "identity"}
	out := make([][]byte, n)
	for i := range out {
		s, err := client.Build(r.court, client.Request{Query: queries[i%len(queries)], Subject: r.subjects[i%len(r.subjects)],
			Basis: "criminal-proceedings", CaseRef: fmt.Sprintf("B-%d", i)}, r.now)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = s.Bytes
	}
	return out
}

// handle runs one message and checks the outcome; it is safe in RunParallel.
func (r *benchRig) handleAs(b *testing.B, value []byte, outcome string) {
	res, err := r.p.Handle(context.Background(), broker.Message{Topic: r.topic, Value: value})
	if err != nil {
		b.Error(err)
		return
	}
	if res.Outcome != outcome || len(res.Outputs) != 1 {
		b.Errorf("outcome %s/%s with %d outputs, want %s", res.Outcome, res.Reason, len(res.Outputs), outcome)
	}
}

// report adds throughput and, when Saves happened, the mean rows per
// group-commit transaction.
func (r *benchRig) report(b *testing.B, before store.Stats) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	after := r.store.Stats()
	if tx := after.Batches - before.Batches; tx > 0 {
		b.ReportMetric(float64(after.Rows-before.Rows)/float64(tx), "rows/txn")
	}
}

// parallel runs op over msgs[0:b.N] from benchParallelism goroutines per
// processor.
func parallel(b *testing.B, msgs [][]byte, op func([]byte)) {
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			op(msgs[next.Add(1)-1])
		}
	})
}

// BenchmarkPipelineHandle measures Pipeline.Handle per message with real
// parts in-process: no Kafka, no middleware.
//
//	answered/serial    one message at a time: each Save pays for one
//	                   commit of its own
//	answered/parallel  a fresh signed request per op, many at once
//	redelivery         the same bytes again: the stored receipt re-emitted
//	dead_letter        a bad signature: a dead-letter record, nothing stored
func BenchmarkPipelineHandle(b *testing.B) {
	b.Run("answered/serial", func(b *testing.B) {
		r := newBenchRig(b)
		msgs := r.signMany(b, b.N)
		before := r.store.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			r.handleAs(b, msgs[i], schemas.DecisionAnswered)
		}
		b.StopTimer()
		r.report(b, before)
	})
	b.Run("answered/parallel", func(b *testing.B) {
		r := newBenchRig(b)
		msgs := r.signMany(b, b.N)
		before := r.store.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		parallel(b, msgs, func(m []byte) { r.handleAs(b, m, schemas.DecisionAnswered) })
		b.StopTimer()
		r.report(b, before)
	})
	b.Run("redelivery/parallel", func(b *testing.B) {
		r := newBenchRig(b)
		const distinct = 512
		stored := r.signMany(b, distinct)
		for _, m := range stored {
			r.handleAs(b, m, schemas.DecisionAnswered)
		}
		msgs := make([][]byte, b.N)
		for i := range msgs {
			msgs[i] = stored[i%distinct]
		}
		before := r.store.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		parallel(b, msgs, func(m []byte) { r.handleAs(b, m, schemas.DecisionAnswered) })
		b.StopTimer()
		r.report(b, before)
	})
	b.Run("dead_letter/parallel", func(b *testing.B) {
		r := newBenchRig(b)
		good := r.signMany(b, 1)[0]
		// The signature's last characters replaced: well-formed, not valid.
		tail := "AAAAAA"
		if string(good[len(good)-6:]) == tail {
			tail = "BBBBBB"
		}
		forged := append(append([]byte{}, good[:len(good)-6]...), tail...)
		if res, _ := r.p.Handle(context.Background(), broker.Message{Topic: r.topic, Value: forged}); res.Reason != string(envelope.ReasonSignatureInvalid) {
			b.Fatalf("forged request: %s/%s, want a dead letter for %s", res.Outcome, res.Reason, envelope.ReasonSignatureInvalid)
		}
		msgs := make([][]byte, b.N)
		for i := range msgs {
			msgs[i] = forged
		}
		before := r.store.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		parallel(b, msgs, func(m []byte) { r.handleAs(b, m, broker.OutcomeDeadLetter) })
		b.StopTimer()
		r.report(b, before)
	})
}

// BenchmarkSeal measures signing one receipt as the pipeline does, with
// and without the schema check the broker leaves to its tests
// (ReceiptSealer.Schemas):
//
//	go test ./broker -run '^$' -bench Seal
func BenchmarkSeal(b *testing.B) {
	r := newBenchRig(b)
	res, err := r.p.Handle(context.Background(), broker.Message{Topic: r.topic, Value: r.signMany(b, 1)[0]})
	if err != nil || len(res.Outputs) != 1 {
		b.Fatalf("%v %+v", err, res)
	}
	jws, err := jose.ParseSigned(string(res.Outputs[0].Value), []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		b.Fatal(err)
	}
	var p envelope.Payload
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &p); err != nil {
		b.Fatal(err)
	}
	key, err := keys.Generate("certless", "k1", keys.EdDSA)
	if err != nil {
		b.Fatal(err)
	}
	set, err := schemas.Default()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  *schemas.Set
	}{{"schema_checked", set}, {"unchecked", nil}} {
		b.Run(tc.name, func(b *testing.B) {
			s := &broker.ReceiptSealer{Keys: broker.StaticKey{Key: key}, Schemas: tc.set}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(context.Background(), p, "court-changchun"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
