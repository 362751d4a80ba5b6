package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/schemas"
)

// TestRealKafkaNodeLoss streams 20,000 requests through a broker on the
// three-node KRaft cluster of scripts/services.sh (replication factor 3,
// min.insync.replicas 2, producers acks=all), SIGKILLs the Kafka node that
// leads most request partitions mid-stream, lets the broker go on with two
// nodes, restarts the node later, and proves that every request has
// exactly one distinct receipt, without anybody restarting the broker.
func TestRealKafkaNodeLoss(t *testing.T) {
	const total = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cluster := testenv.KafkaCluster(t)
	r := newKillRigWith(ctx, t, total, func(c *config.Config) {
		c.Kafka.Brokers = cluster.Brokers
		c.Kafka.ReplicationFactor = 3
	})
	leaders, err := partitionLeaders(ctx, r.kcfg, r.topicsOf(r.topics.Requests), 3)
	if err != nil {
		t.Fatal(err)
	}
	proc := r.start()
	r.waitFor(total / 8)
	victim := mostLeading(leaders)
	cluster.Kill(t, victim)
	killedAt, atKill := time.Now(), r.receipted()
	t.Logf("%5.1fs SIGKILL of Kafka node %d (leader of %d of %d request partitions) after %d receipted requests",
		r.since(), victim, leaders[victim], sum(leaders), atKill)
	// The broker goes on with two nodes: a share of the stream is
	// answered before the node comes back.
	r.waitFor(atKill + total/8)
	t.Logf("%5.1fs %d receipted with node %d down (%d more, %.1fs after the kill); restarting it",
		r.since(), r.receipted(), victim, r.receipted()-atKill, time.Since(killedAt).Seconds())
	cluster.Up(t)
	atRestart := r.receipted()
	t.Logf("%5.1fs Kafka node %d restarted and serving; %d receipted", r.since(), victim, atRestart)
	if err := <-r.prodDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	r.waitFor(total)
	t.Logf("%5.1fs all %d requests receipted (%d after the restart) by the one broker process that ran throughout; %d chunks re-sent by the producer",
		r.since(), total, total-atRestart, r.resent.Load())
	// The restarted node caught up: every partition has its three
	// replicas in sync again.
	testenv.Eventually(ctx, t, "every request partition back to three replicas in sync", time.Minute, func() error {
		_, err := partitionLeaders(ctx, r.kcfg, r.topicsOf(r.topics.Requests), 3)
		return err
	})
	t.Logf("%5.1fs node %d is back in sync on every request partition", r.since(), victim)
	r.stop(proc)
	r.verdict("kafka-node-loss")
	checkOrdinaryOutcomes(t, r.decisions())
}

// TestRealKafkaStoreOutage kills the broker's PostgreSQL (an immediate
// shutdown, as a crash) mid-stream for several seconds and starts it
// again: meanwhile the broker reports not ready, decides and commits
// nothing, and the agencies' receipts are only delayed; when the database
// is back it recovers by itself, and every request has exactly one
// receipt with the answer it would have had anyway.
func TestRealKafkaStoreOutage(t *testing.T) {
	const total = 6000
	const outage = 8 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	pg := testenv.StoppablePostgres(t)
	dsn := pg.Database(t)
	port := freePort(t)
	r := newKillRigWith(ctx, t, total, func(c *config.Config) {
		c.Store.DSN = dsn
		c.HTTP.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	})
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	proc := r.start()
	r.waitFor(total / 5)
	pg.Kill(t)
	stoppedAt, atStop := time.Now(), r.receipted()
	t.Logf("%5.1fs PostgreSQL killed after %d receipted requests", r.since(), atStop)

	testenv.Eventually(ctx, t, "/readyz to report the store failing", 20*time.Second, func() error {
		code, body := getStatus(t, readyz)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	t.Logf("%5.1fs /readyz 503 naming the store, %.1fs after the kill", r.since(), time.Since(stoppedAt).Seconds())
	// What was recorded before the kill has been published by now; from
	// here on nothing can be decided, so nothing is answered or committed.
	waitABit(ctx, 2*time.Second)
	n1, c1 := r.receipted(), committedOffsets(ctx, t, r)
	waitABit(ctx, outage-time.Since(stoppedAt))
	n2, c2 := r.receipted(), committedOffsets(ctx, t, r)
	t.Logf("%5.1fs during the outage: receipted %d → %d, committed offsets %d → %d", r.since(), n1, n2, sum(c1), sum(c2))
	if n2 != n1 {
		t.Errorf("%d receipts published while the store was down", n2-n1)
	}
	if !maps.Equal(c1, c2) {
		t.Errorf("offsets committed while the store was down: %v → %v", c1, c2)
	}
	if n1 >= total {
		t.Fatalf("the outage came after the stream: %d receipted", n1)
	}

	pg.Start(t)
	restartedAt := time.Now()
	t.Logf("%5.1fs PostgreSQL started again after %.1fs down", r.since(), time.Since(stoppedAt).Seconds())
	testenv.Eventually(ctx, t, "/readyz to recover", 60*time.Second, func() error {
		if code, body := getStatus(t, readyz); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	t.Logf("%5.1fs ready again, %.1fs after the restart", r.since(), time.Since(restartedAt).Seconds())
	if err := <-r.prodDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	r.waitFor(total)
	t.Logf("%5.1fs all %d requests receipted, %.1fs after the restart, by the broker that ran throughout", r.since(), total, time.Since(restartedAt).Seconds())
	r.stop(proc)
	r.verdict("store-outage")
	checkOrdinaryOutcomes(t, r.decisions())
}

// checkOrdinaryOutcomes fails t unless every receipt carries an outcome the
// stream's requests earn on a healthy system (the bench's mix: answered,
// not found, denied): a fault may delay answers, never change them.
func checkOrdinaryOutcomes(t *testing.T, decisions map[string]int) {
	t.Helper()
	for d, n := range decisions {
		switch d {
		case schemas.DecisionAnswered, schemas.DecisionNotFound, schemas.DecisionDenied:
		default:
			t.Errorf("%d receipts with outcome %q", n, d)
		}
	}
	if decisions[schemas.DecisionAnswered] == 0 || decisions[schemas.DecisionNotFound] == 0 || decisions[schemas.DecisionDenied] == 0 {
		t.Errorf("the stream's mix is missing an outcome: %v", decisions)
	}
}

// topicsOf returns the rig's agencies' topics named by of.
func (r *killRig) topicsOf(of func(string) string) []string {
	var out []string
	for _, a := range r.agencies {
		out = append(out, of(a))
	}
	return out
}

// partitionLeaders counts, by Kafka node id, the partitions of topics each
// node leads; an error unless every partition has rf replicas, all in
// sync.
func partitionLeaders(ctx context.Context, cfg bkafka.Config, topics []string, rf int) (map[int]int, error) {
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	var conn *kafkago.Conn
	for _, b := range cfg.Brokers {
		if conn, err = dialer.DialContext(ctx, "tcp", b); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topics...)
	if err != nil {
		return nil, err
	}
	leaders := map[int]int{}
	for _, p := range parts {
		if len(p.Replicas) != rf || len(p.Isr) != rf {
			return nil, fmt.Errorf("%s/%d has %d replicas, %d in sync; want %d", p.Topic, p.ID, len(p.Replicas), len(p.Isr), rf)
		}
		leaders[p.Leader.ID]++
	}
	return leaders, nil
}

// mostLeading returns the node id leading most partitions (the lowest id
// on a tie).
func mostLeading(leaders map[int]int) int {
	best := 0
	for _, id := range slices.Sorted(maps.Keys(leaders)) {
		if best == 0 || leaders[id] > leaders[best] {
			best = id
		}
	}
	return best
}

// committedOffsets returns the broker group's committed offset of every
// request partition ("topic/partition" → offset).
func committedOffsets(ctx context.Context, t *testing.T, r *killRig) map[string]int64 {
	t.Helper()
	tr, err := r.kcfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	c := &kafkago.Client{Addr: kafkago.TCP(r.kcfg.Brokers...), Transport: tr, Timeout: 10 * time.Second}
	req := &kafkago.OffsetFetchRequest{GroupID: r.cfg.Kafka.GroupID, Topics: map[string][]int{}}
	for _, topic := range r.topicsOf(r.topics.Requests) {
		for p := range r.cfg.Kafka.Partitions {
			req.Topics[topic] = append(req.Topics[topic], p)
		}
	}
	resp, err := c.OffsetFetch(ctx, req)
	if err != nil {
		t.Fatalf("fetch committed offsets: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("fetch committed offsets: %v", resp.Error)
	}
	out := map[string]int64{}
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatalf("committed offset of %s/%d: %v", topic, p.Partition, p.Error)
			}
			out[fmt.Sprintf("%s/%d", topic, p.Partition)] = p.CommittedOffset
		}
	}
	return out
}

func sum[K comparable, V int | int64](m map[K]V) V {
	var s V
	for _, v := range m {
		s += v
	}
	return s
}
