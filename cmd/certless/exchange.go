package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/exchange"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// exchangeJobs are the schedules of the agreements of set in force at now.
func exchangeJobs(set *policies.Set, now time.Time) []exchange.Job {
	var out []exchange.Job
	for _, in := range set.InForce(now) {
		a := in.Agreement
		for _, s := range a.Schedules {
			j := exchange.Job{
				Agreement: schemas.AgreementRef{ID: in.Ref.ID, Version: in.Ref.Version, Digest: in.Ref.Digest},
				Schedule:  s.Name, Cron: s.Cron, Recipient: s.Recipient, From: a.Validity.From, Until: a.Validity.Until,
				Query: s.Query,
			}
			if j.Recipient == "" {
				j.Recipient = a.Parties.Requester
			}
			if t := a.Terms(s.Query); t != nil {
				j.Fields = t.Fields
				if len(t.Purposes) > 0 {
					j.Purpose = t.Purposes[0]
				}
			} else {
				j.Fields = []string{} // not an agreed query: Build refuses it
			}
			out = append(out, j)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// batchBuilder builds a job's batches from the record sources' change
// feeds, signed with the broker's key.
type batchBuilder struct {
	brokerID string
	// region is the recipient's jurisdiction.
	region func(ctx context.Context, agency string) (string, error)
	feed   func(region string) (adapters.ChangeFeed, string)
	key    func() (*keys.Private, error)
	set    *schemas.Set
}

func (b *batchBuilder) build(ctx context.Context, job exchange.Job, p exchange.Period) (exchange.Batch, error) {
	if job.Fields != nil && len(job.Fields) == 0 {
		return exchange.Batch{}, fmt.Errorf("schedule %s sends %s, which its agreement does not allow", job.Key(), job.Query)
	}
	region, err := b.region(ctx, job.Recipient)
	if err != nil {
		return exchange.Batch{}, err
	}
	feed, _ := b.feed(region)
	if feed == nil {
		return exchange.Batch{}, fmt.Errorf("no record source with a change feed covers %s", region)
	}
	key, err := b.key()
	if err != nil {
		return exchange.Batch{}, fmt.Errorf("the broker's signing key: %w", err)
	}
	return exchange.Build(ctx, feed, exchange.Spec{
		Agreement: job.Agreement, Schedule: job.Schedule, Recipient: job.Recipient, Type: adapters.QueryType(job.Query),
		Region: region, From: p.From, To: p.To, Sequence: p.Sequence, Fields: job.Fields, Purpose: job.Purpose,
	}, b.brokerID, key, b.set)
}

// batchProducer is what publishing a batch needs of a Kafka producer.
type batchProducer interface {
	Produce(ctx context.Context, msgs ...bkafka.Message) error
}

// batchPublisher produces stored batches to <prefix><recipient>.batches,
// creating the topic if needed: the records in index order, then the
// manifest, each keyed by the batch id (one partition: in order) with the
// headers certless-batch, certless-batch-index or certless-batch-manifest.
type batchPublisher struct {
	kafka       bkafka.Config
	topics      broker.Topics
	replication int
	producer    batchProducer
	// ensured are the batches topics created (or found) already: each is
	// ensured once per process, not per batch — a CreateTopics request per
	// publication, from every broker, slowed the cluster's controller
	// enough to time out other clients' topic creation.
	ensured sync.Map
}

func (p *batchPublisher) publish(ctx context.Context, b exchange.Stored) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	topic := p.topics.Batches(b.Recipient)
	if _, ok := p.ensured.Load(topic); !ok {
		if err := bkafka.EnsureTopics(ctx, p.kafka, bkafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: p.replication}); err != nil {
			return fmt.Errorf("batches topic: %w", bkafka.Explain(ctx, p.kafka, err))
		}
		p.ensured.Store(topic, true)
	}
	msgs := make([]bkafka.Message, 0, len(b.Records)+1)
	for i, r := range b.Records {
		msgs = append(msgs, bkafka.Message{Topic: topic, Key: []byte(b.ID), Value: r,
			Headers: []bkafka.Header{{Key: "certless-batch", Value: []byte(b.ID)}, {Key: "certless-batch-index", Value: []byte(fmt.Sprint(i))}}})
	}
	msgs = append(msgs, bkafka.Message{Topic: topic, Key: []byte(b.ID), Value: b.Manifest,
		Headers: []bkafka.Header{{Key: "certless-batch", Value: []byte(b.ID)}, {Key: "certless-batch-manifest", Value: []byte("1")}}})
	// A fault point of the crash test: die hard after the first records.
	if n := crashAfterRecords(); n >= 0 && n <= len(b.Records) {
		if err := p.producer.Produce(ctx, msgs[:n]...); err != nil {
			return err
		}
		crashNow()
	}
	if err := p.producer.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("publish batch %s: %w", b.ID, bkafka.Explain(ctx, p.kafka, err))
	}
	return nil
}

// leafAppender appends a keyed leaf to the transparency log.
type leafAppender interface {
	AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
}

// logBatch appends a batch's leaf to the transparency log under
// "batch:<id>" (once: the key is unique): kind batch_manifest, Agency the
// recipient, its agreement, Reason the schedule, Receipt the manifest's
// digest, Subject the records' Merkle root, Time the period's end.
func logBatch(ctx context.Context, log leafAppender, b exchange.Stored) error {
	m, err := exchange.ParseManifest(b.Manifest)
	if err != nil {
		return err
	}
	leaf, err := translog.Leaf{Kind: translog.KindBatchManifest, Agency: b.Recipient, Agreement: m.Agreement.Digest,
		AgreementID: m.Agreement.ID, AgreementVersion: m.Agreement.Version, Reason: b.Schedule,
		Receipt: translog.Digest(b.Manifest), Subject: m.MerkleRoot, Time: translog.FormatTime(b.To)}.Marshal()
	if err != nil {
		return err
	}
	_, err = log.AppendLeaf(ctx, "batch:"+b.ID, leaf)
	return err
}

// batchParts reads the parts of a batches topic as VerifyStream takes them,
// from the headers batchPublisher sets; a record without them is refused.
func batchParts(recs []client.Record) ([]exchange.Part, error) {
	parts := make([]exchange.Part, 0, len(recs))
	for _, r := range recs {
		p := exchange.Part{Batch: r.Headers["certless-batch"], Index: -1, Value: r.Value}
		if p.Batch == "" {
			return nil, fmt.Errorf("offset %d of %s is not a batch part (no certless-batch header)", r.Offset, r.Topic)
		}
		if r.Headers["certless-batch-manifest"] != "1" {
			var err error
			if p.Index, err = strconv.Atoi(r.Headers["certless-batch-index"]); err != nil || p.Index < 0 {
				return nil, fmt.Errorf("offset %d of %s: batch %s part without a valid certless-batch-index", r.Offset, r.Topic, p.Batch)
			}
		}
		parts = append(parts, p)
	}
	return parts, nil
}
