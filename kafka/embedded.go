package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Port is the first broker's port on 127.0.0.1; 0 picks free ports (tests).
	// Further brokers listen on Port+1, Port+2...
	Port int
	// Brokers is the number of brokers (1).
	Brokers int
	// DefaultPartitions is used for topics created without a partition
	// count (1).
	DefaultPartitions int
	// Users enables SASL with these accounts (PLAIN or SCRAM). All are
	// superusers. Empty means no authentication.
	Users []SASL
	// DataDir, when set, keeps the cluster's topics, offsets and groups on
	// disk across restarts; otherwise they live in memory.
	DataDir string
}

// Embedded is an in-process Kafka-protocol cluster (franz-go kfake) for
// `certless dev` and tests. It speaks enough of the protocol for kafka-go:
// topic creation, produce with acks=all, consumer groups and commits, SASL.
// The group session timeout must be at least 6s.
type Embedded struct {
	c     *kfake.Cluster
	users []SASL
}

// StartEmbedded starts a cluster and returns once it answers metadata
// requests, or when ctx ends.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	if opts.Brokers == 0 {
		opts.Brokers = 1
	}
	if opts.DefaultPartitions == 0 {
		opts.DefaultPartitions = 1
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(opts.Brokers),
		kfake.DefaultNumPartitions(opts.DefaultPartitions),
		kfake.ClusterID("certless-embedded"),
	}
	if opts.Port != 0 {
		ports := make([]int, opts.Brokers)
		for i := range ports {
			ports[i] = opts.Port + i
		}
		kopts = append(kopts, kfake.Ports(ports...))
	}
	if len(opts.Users) > 0 {
		kopts = append(kopts, kfake.EnableSASL())
		for _, u := range opts.Users {
			switch u.Mechanism {
			case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
			default:
				return nil, fmt.Errorf("kafka: embedded: unknown sasl mechanism %q for user %q", u.Mechanism, u.Username)
			}
			kopts = append(kopts, kfake.Superuser(u.Mechanism, u.Username, u.Password))
		}
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: embedded: %w", err)
	}
	e := &Embedded{c: c, users: opts.Users}
	ready, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitReady(ready, e.Config()); err != nil {
		c.Close()
		return nil, fmt.Errorf("kafka: embedded cluster not ready: %w", err)
	}
	return e, nil
}

// Addrs returns the brokers' host:port addresses.
func (e *Embedded) Addrs() []string { return e.c.ListenAddrs() }

// Config returns a Config that reaches the cluster, authenticated as the
// first configured user if any.
func (e *Embedded) Config() Config {
	cfg := Config{Brokers: e.Addrs(), ClientID: "certless"}
	if len(e.users) > 0 {
		cfg.SASL = e.users[0]
	}
	return cfg
}

// Close stops the cluster and closes its listeners; with DataDir set, its
// state is saved first.
func (e *Embedded) Close() { e.c.Close() }
