package kafka_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/kafka"
)

// These tests run against the real broker's SASL_SSL listener
// (scripts/services.sh): SCRAM-SHA-512 over TLS, StandardAuthorizer, no ACL
// means no access. The admin is a super user there; every agency user gets
// only the ACLs an agency gets in production.

// secureConfig is a client of the secured listener as user/password.
func secureConfig(s testenv.SecureListener, user, password string) kafka.Config {
	return kafka.Config{
		Brokers:  []string{s.Addr},
		ClientID: "certless-test-" + user,
		TLS:      kafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:     kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA512, Username: user, Password: password},
	}
}

// kafkaClient is a kafka-go admin-API client for cfg; closed with t.
func kafkaClient(t *testing.T, cfg kafka.Config) *kafkago.Client {
	t.Helper()
	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Transport: tr, Timeout: 20 * time.Second}
}

// agency is a SCRAM-SHA-512 user with an agency's topics and ACLs.
type agency struct {
	name, password     string
	requests, receipts string
	groupPrefix        string
	cfg                kafka.Config
}

func (a agency) access() kafka.AgencyAccess {
	return kafka.AgencyAccess{Principal: a.name, RequestsTopic: a.requests, ReceiptsTopic: a.receipts, GroupPrefix: a.groupPrefix}
}

// newAgency creates, as the admin, a user with a random name, its two
// topics, and the ACLs an agency gets (kafka.UpsertSCRAM, EnsureTopics,
// EnsureAgencyAccess, as `certless agency dock` does). All of it is
// removed when t ends.
func newAgency(ctx context.Context, t *testing.T, s testenv.SecureListener, admin kafka.Config, ac *kafkago.Client, label string) agency {
	t.Helper()
	a := agency{name: "agency-" + label + "-" + testenv.Random(4), password: testenv.Random(12)}
	a.requests, a.receipts, a.groupPrefix = a.name+".requests", a.name+".receipts", a.name+"."
	a.cfg = secureConfig(s, a.name, a.password)

	if err := kafka.UpsertSCRAM(ctx, admin, a.name, a.password); err != nil {
		t.Fatalf("create SCRAM user %s: %v", a.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := kafka.DeleteSCRAM(ctx, admin, a.name); err != nil {
			t.Logf("delete SCRAM user %s: %v", a.name, err)
		}
	})

	if err := kafka.EnsureTopics(ctx, admin,
		kafka.TopicSpec{Name: a.requests, Partitions: 1},
		kafka.TopicSpec{Name: a.receipts, Partitions: 1}); err != nil {
		t.Fatalf("create topics of %s: %v", a.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := ac.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{a.requests, a.receipts}}); err != nil {
			t.Logf("delete topics of %s: %v", a.name, err)
		}
	})

	if err := kafka.EnsureAgencyAccess(ctx, admin, a.access()); err != nil {
		t.Fatalf("create ACLs of %s: %v", a.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := kafka.RevokeAgencyAccess(ctx, admin, a.access()); err != nil {
			t.Logf("delete ACLs of %s: %v", a.name, err)
		}
	})

	// The user and its ACLs reach the broker through the metadata log:
	// wait until the user can log in and describe its own topics.
	uc := kafkaClient(t, a.cfg)
	testenv.Eventually(ctx, t, "agency "+a.name+" using its topics after it was created", 30*time.Second, func() error {
		if err := kafka.Ping(ctx, a.cfg); err != nil {
			return err
		}
		md, err := uc.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{a.requests, a.receipts}})
		if err != nil {
			return err
		}
		for _, tp := range md.Topics {
			if tp.Error != nil {
				return tp.Error
			}
		}
		return nil
	})
	return a
}

// partitionConn is a connection as cfg's user to the leader of partition 0
// of topic (the only broker), with no metadata lookup first; closed with t.
func partitionConn(ctx context.Context, t *testing.T, cfg kafka.Config, topic string) *kafkago.Conn {
	t.Helper()
	d, err := cfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(cfg.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.DialPartition(ctx, "tcp", cfg.Brokers[0], kafkago.Partition{
		Topic: topic, ID: 0, Leader: kafkago.Broker{Host: host, Port: n, ID: 1},
	})
	if err != nil {
		t.Fatalf("connect as %s: %v", cfg.SASL.Username, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

func secureAdmin(t *testing.T) (testenv.SecureListener, kafka.Config, *kafkago.Client) {
	t.Helper()
	s := testenv.SecureKafka(t)
	admin := secureConfig(s, s.AdminUser, s.AdminPassword)
	return s, admin, kafkaClient(t, admin)
}

// TestRealKafkaSecureAgencyACLs: agency A writes its requests and reads its
// receipts over SASL_SSL, and is refused B's requests, B's receipts and B's
// consumer group, while B can use its own.
func TestRealKafkaSecureAgencyACLs(t *testing.T) {
	s, admin, ac := secureAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAgency(ctx, t, s, admin, ac, "a")
	b := newAgency(ctx, t, s, admin, ac, "b")

	// The bureau (here the admin) writes one receipt for each agency.
	bureau, err := kafka.NewProducer(admin, kafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bureau.Close()
	if err := bureau.Produce(ctx,
		kafka.Message{Topic: a.receipts, Key: []byte("r"), Value: []byte("receipt for a")},
		kafka.Message{Topic: b.receipts, Key: []byte("r"), Value: []byte("receipt for b")}); err != nil {
		t.Fatalf("admin produces receipts: %v", err)
	}

	t.Run("A writes its requests", func(t *testing.T) {
		p, err := kafka.NewProducer(a.cfg, kafka.ProducerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Produce(ctx, kafka.Message{Topic: a.requests, Key: []byte("k"), Value: []byte("request")}); err != nil {
			t.Fatalf("A produces to %s: %v", a.requests, err)
		}
	})

	t.Run("A reads its receipts in its group", func(t *testing.T) {
		c := newConsumer(t, a.cfg, a.groupPrefix+"receipts", []string{a.receipts})
		defer c.Close()
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		m := fetch(fctx, t, c)
		if string(m.Value) != "receipt for a" {
			t.Fatalf("A read %q from %s", m.Value, a.receipts)
		}
		if err := c.Commit(fctx, m); err != nil {
			t.Fatalf("A commits in its group: %v", err)
		}
	})

	t.Run("B writes its requests", func(t *testing.T) {
		p, err := kafka.NewProducer(b.cfg, kafka.ProducerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Produce(ctx, kafka.Message{Topic: b.requests, Key: []byte("k"), Value: []byte("request")}); err != nil {
			t.Fatalf("B produces to %s: %v", b.requests, err)
		}
	})

	t.Run("A cannot write B's requests", func(t *testing.T) {
		// Through the producer: kafka-go looks the topic up in the
		// cluster's metadata, where the broker hides topics A may not
		// describe, so it is refused as unknown.
		p, err := kafka.NewProducer(a.cfg, kafka.ProducerOptions{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = p.Produce(pctx, kafka.Message{Topic: b.requests, Key: []byte("k"), Value: []byte("forged")})
		if !errors.Is(err, kafkago.UnknownTopicOrPartition) && !errors.Is(err, kafkago.TopicAuthorizationFailed) {
			t.Fatalf("A produces to %s with the producer: %v, want %v or %v", b.requests, err,
				kafkago.UnknownTopicOrPartition, kafkago.TopicAuthorizationFailed)
		}
		t.Logf("producer refused as it should be: %v", err)
		// A produce request sent straight to the partition's leader is
		// refused by the authorizer.
		conn := partitionConn(ctx, t, a.cfg, b.requests)
		_, err = conn.WriteMessages(kafkago.Message{Key: []byte("k"), Value: []byte("forged")})
		if !errors.Is(err, kafkago.TopicAuthorizationFailed) {
			t.Fatalf("A produces to %s directly: %v, want %v", b.requests, err, kafkago.TopicAuthorizationFailed)
		}
		t.Logf("produce request refused as it should be: %v", err)
	})

	t.Run("A cannot read B's receipts", func(t *testing.T) {
		conn := partitionConn(ctx, t, a.cfg, b.receipts)
		// Seek asks for the partition's offsets (ListOffsets), which
		// needs DESCRIBE on the topic; the fetch itself needs READ.
		_, err := conn.Seek(0, kafkago.SeekAbsolute)
		if err == nil {
			batch := conn.ReadBatch(1, 1<<20)
			_, err = batch.ReadMessage()
			batch.Close()
		}
		if !errors.Is(err, kafkago.TopicAuthorizationFailed) {
			t.Fatalf("A fetches %s: %v, want %v", b.receipts, err, kafkago.TopicAuthorizationFailed)
		}
		t.Logf("fetch refused as it should be: %v", err)
		// Nor may A see its partitions in metadata, which is how a
		// consumer finds them (kafka-go's cached cluster metadata, where
		// the broker left the topic out, calls it unknown).
		md, err := kafkaClient(t, a.cfg).Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{b.receipts}})
		if err != nil {
			t.Fatalf("A asks metadata of %s: %v", b.receipts, err)
		}
		if len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 0 ||
			!errors.Is(md.Topics[0].Error, kafkago.TopicAuthorizationFailed) && !errors.Is(md.Topics[0].Error, kafkago.UnknownTopicOrPartition) {
			t.Fatalf("metadata of %s for A: %+v, want no partitions and %v or %v", b.receipts, md.Topics,
				kafkago.TopicAuthorizationFailed, kafkago.UnknownTopicOrPartition)
		}
	})

	t.Run("A cannot join B's group", func(t *testing.T) {
		uc := kafkaClient(t, a.cfg)
		res, err := uc.JoinGroup(ctx, &kafkago.JoinGroupRequest{
			GroupID:          b.groupPrefix + "receipts",
			SessionTimeout:   10 * time.Second,
			RebalanceTimeout: 10 * time.Second,
			ProtocolType:     "consumer",
			Protocols: []kafkago.GroupProtocol{{
				Name:     "range",
				Metadata: kafkago.GroupProtocolSubscription{Topics: []string{a.receipts}},
			}},
		})
		if err == nil {
			err = res.Error
		}
		if !errors.Is(err, kafkago.GroupAuthorizationFailed) {
			t.Fatalf("A joins group %s: %v, want %v", b.groupPrefix+"receipts", err, kafkago.GroupAuthorizationFailed)
		}
		t.Logf("refused as it should be: %v", err)
	})
}

// TestRealKafkaSecureAgencyAccessIdempotentAndRevoked: EnsureAgencyAccess
// twice leaves exactly the five bindings (no duplicates), and
// RevokeAgencyAccess removes them, after which the agency cannot produce;
// EnsureAgencyAccess again lets it produce again.
func TestRealKafkaSecureAgencyAccessIdempotentAndRevoked(t *testing.T) {
	s, admin, ac := secureAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAgency(ctx, t, s, admin, ac, "idem")

	want := len(a.access().Bindings())
	testenv.WaitACLs(ctx, t, admin, a.name, want)
	if err := kafka.EnsureAgencyAccess(ctx, admin, a.access()); err != nil {
		t.Fatalf("second EnsureAgencyAccess: %v", err)
	}
	testenv.WaitACLs(ctx, t, admin, a.name, want)
	if err := testenv.ProduceDirect(ctx, a.cfg, a.requests); err != nil {
		t.Fatalf("A produces to its requests: %v", err)
	}

	if err := kafka.RevokeAgencyAccess(ctx, admin, a.access()); err != nil {
		t.Fatalf("RevokeAgencyAccess: %v", err)
	}
	testenv.WaitACLs(ctx, t, admin, a.name, 0)
	if err := kafka.RevokeAgencyAccess(ctx, admin, a.access()); err != nil {
		t.Fatalf("RevokeAgencyAccess again: %v", err)
	}
	// ACL changes reach the broker through the metadata log: poll.
	testenv.WaitProduce(ctx, t, a.cfg, a.requests, false)

	if err := kafka.EnsureAgencyAccess(ctx, admin, a.access()); err != nil {
		t.Fatalf("EnsureAgencyAccess after revoking: %v", err)
	}
	testenv.WaitProduce(ctx, t, a.cfg, a.requests, true)
}

// TestRealKafkaSecureWrongPassword: a wrong SCRAM password fails Ping with
// an error that says SASL authentication failed, for whom and where.
func TestRealKafkaSecureWrongPassword(t *testing.T) {
	s, admin, ac := secureAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := newAgency(ctx, t, s, admin, ac, "pw")

	bad := secureConfig(s, a.name, a.password+"-wrong")
	err := kafka.Ping(ctx, bad)
	if err == nil {
		t.Fatal("Ping with a wrong SCRAM password succeeded")
	}
	msg := err.Error()
	for _, want := range []string{s.Addr, "SASL SCRAM-SHA-512 authentication as \"" + a.name + "\" failed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ping error does not name %q:\n%s", want, msg)
		}
	}
	t.Logf("Ping: %v", err)
	if err := kafka.Diagnose(ctx, bad); err == nil || !strings.Contains(err.Error(), s.Addr) {
		t.Errorf("Diagnose with a wrong password: %v", err)
	}
	if err := kafka.Diagnose(ctx, a.cfg); err != nil {
		t.Errorf("Diagnose with the right password: %v", err)
	}
}

// TestRealKafkaSecureUntrustedCA: a CA that did not sign the broker's
// certificate fails Ping with an error naming the certificate problem and
// the address.
func TestRealKafkaSecureUntrustedCA(t *testing.T) {
	s := testenv.SecureKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := secureConfig(s, s.AdminUser, s.AdminPassword)
	cfg.TLS.CAFile = testenv.UntrustedCA(t)
	err := kafka.Ping(ctx, cfg)
	if err == nil {
		t.Fatal("Ping trusting another CA succeeded")
	}
	msg := err.Error()
	for _, want := range []string{s.Addr, "TLS handshake failed", "certificate signed by unknown authority"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ping error does not name %q:\n%s", want, msg)
		}
	}
	t.Logf("Ping: %v", err)
	// The right CA, as a control.
	if err := kafka.Ping(ctx, secureConfig(s, s.AdminUser, s.AdminPassword)); err != nil {
		t.Fatalf("Ping with the broker's CA: %v", err)
	}
}
