package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/kafka"
)

// TestEmbeddedSASL authenticates with each supported mechanism against the
// embedded cluster, through both kafka-go paths (Transport for topics and
// producing, Dialer for the consumer group), and refuses a wrong password.
func TestEmbeddedSASL(t *testing.T) {
	users := []kafka.SASL{
		{Mechanism: kafka.MechanismSCRAMSHA256, Username: "broker", Password: "s256-" + testenv.Random(4)},
		{Mechanism: kafka.MechanismSCRAMSHA512, Username: "auditor", Password: "s512-" + testenv.Random(4)},
		{Mechanism: kafka.MechanismPlain, Username: "agency", Password: "plain-" + testenv.Random(4)},
	}
	e := startEmbedded(t, kafka.EmbeddedOptions{Users: users})

	for _, u := range users {
		t.Run(u.Mechanism, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cfg := kafka.Config{Brokers: e.Addrs(), SASL: u}
			topic := "sasl-" + testenv.Random(4)
			if err := kafka.EnsureTopics(ctx, cfg, kafka.TopicSpec{Name: topic, Partitions: 1}); err != nil {
				t.Fatalf("EnsureTopics: %v", err)
			}
			p, err := kafka.NewProducer(cfg, kafka.ProducerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := p.Produce(ctx, kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte(u.Username)}); err != nil {
				t.Fatalf("Produce: %v", err)
			}
			c := newConsumer(t, cfg, "g-"+topic, []string{topic})
			defer c.Close()
			m := fetch(ctx, t, c)
			if string(m.Value) != u.Username {
				t.Fatalf("read %q, want %q", m.Value, u.Username)
			}
			if err := c.Commit(ctx, m); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bad := users[0]
		bad.Password = "wrong"
		if err := kafka.Ping(ctx, kafka.Config{Brokers: e.Addrs(), SASL: bad}); err == nil {
			t.Fatal("Ping with a wrong SCRAM password succeeded")
		}
	})
}
