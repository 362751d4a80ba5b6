package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/directory"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// docking is the running broker's view of the docking directory, which it
// follows (directory.Follow): which agencies are docked and whether they are
// suspended, their signing keys and receipt encryption keys, and the request
// topics the consumer group reads. A snapshot is swapped in whole, so a
// message is handled against one version of the directory.
//
// Keys: an agency's signing keys are those of its directory JWKS together
// with those of the keys folder (where `certless keys generate` and `keys
// revoke` write, watched as before); a kid revoked in either is revoked.
// The keys folder alone holds the keys of principals that are not agencies
// (the broker, the police data owners).
type docking struct {
	folder *keys.Registry
	cur    atomic.Pointer[dockState]
	// topicsChanged is signalled (capacity 1) when the set of request
	// topics changed: the consumer rejoins with the new set.
	topicsChanged chan struct{}
	requests      func(agency string) string
}

// dockState is one directory snapshot with what the broker derives from it.
type dockState struct {
	snap *directory.Snapshot
	sig  map[string]keys.Public // kid → signing key of the directory
	enc  map[string]keys.Public // agency → receipt encryption key
	// topics are the request topics of every docked agency, sorted; a
	// suspended agency's are read too, so its requests get a signed denial.
	topics []string
}

func newDocking(folder *keys.Registry, requests func(string) string) *docking {
	d := &docking{folder: folder, requests: requests, topicsChanged: make(chan struct{}, 1)}
	d.cur.Store(&dockState{snap: &directory.Snapshot{}})
	return d
}

// apply swaps in snap and reports what could not be used (an agency whose
// stored keys no longer parse keeps no directory keys).
func (d *docking) apply(snap *directory.Snapshot) []error {
	st := &dockState{snap: snap, sig: map[string]keys.Public{}, enc: map[string]keys.Public{}}
	var problems []error
	for id, a := range snap.Agencies {
		st.topics = append(st.topics, d.requests(id))
		pubs, err := keys.ParseJWKS(a.JWKS)
		if err != nil {
			problems = append(problems, fmt.Errorf("agency %s: signing JWKS: %w", id, err))
		}
		for _, p := range pubs {
			if p.Agency == id && p.Use() == keys.UseSig {
				st.sig[p.KID()] = p
			}
		}
		if len(a.EncryptionKey) > 0 {
			set, _ := json.Marshal(map[string][]json.RawMessage{"keys": {a.EncryptionKey}})
			enc, err := keys.ParseJWKS(set)
			if err != nil || len(enc) != 1 || enc[0].Agency != id {
				problems = append(problems, fmt.Errorf("agency %s: encryption key does not parse: %v", id, err))
				continue
			}
			st.enc[id] = enc[0]
		}
	}
	slices.Sort(st.topics)
	prev := d.cur.Swap(st)
	if !slices.Equal(prev.topics, st.topics) {
		select {
		case d.topicsChanged <- struct{}{}:
		default:
		}
	}
	return problems
}

func (d *docking) state() *dockState { return d.cur.Load() }

// topics returns the request topics of the docked agencies.
func (d *docking) topics() []string { return slices.Clone(d.state().topics) }

// Lookup implements envelope.KeyResolver over the directory and the keys
// folder.
func (d *docking) Lookup(kid string) (keys.Public, bool) {
	dk, inDir := d.state().sig[kid]
	fk, inFolder := d.folder.Lookup(kid)
	switch {
	case inDir && inFolder:
		if fk.Revoked() && (!dk.Revoked() || fk.RevokedAt.Before(dk.RevokedAt)) {
			return fk, true
		}
		return dk, true
	case inDir:
		return dk, true
	default:
		return fk, inFolder
	}
}

// EncryptionKey implements broker.EncryptionKeys: the directory's key of the
// agency, else the keys folder's.
func (d *docking) EncryptionKey(agency string, now time.Time) (keys.Public, error) {
	if p, ok := d.state().enc[agency]; ok && p.ValidAt(now) {
		return p, nil
	}
	return d.folder.EncryptionKey(agency, now)
}

// Confidential reports whether agency's receipts are encrypted: it has an
// encryption key in the directory.
func (d *docking) Confidential(agency string) bool {
	_, ok := d.state().enc[agency]
	return ok
}

// Docked implements broker.Docking.
func (d *docking) Docked(agency string) (broker.DockedAgency, bool) {
	a, ok := d.state().snap.Agency(agency)
	if !ok {
		return broker.DockedAgency{}, false
	}
	return broker.DockedAgency{Level: a.Level, Region: a.Region, Suspended: a.Status == directory.Suspended}, true
}

// openDirectory opens the docking directory on the decision store's
// database and, when it is empty (first start), imports the configuration's
// agencies and record sources.
func openDirectory(ctx context.Context, dsn string, st directory.Leaves, imp func(context.Context, *directory.Directory) ([]directory.Change, error), log *zap.Logger) (*directory.Directory, error) {
	dir, err := directory.Open(ctx, dsn, st)
	if err != nil {
		return nil, fmt.Errorf("docking directory: %w", err)
	}
	// A directory with a history is not imported into: a broker role that
	// may only read it (directory.PostgresRoleSQL) starts without writing.
	v, err := dir.Version(ctx)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("docking directory: %w", err)
	}
	if v > 0 {
		return dir, nil
	}
	cs, err := imp(ctx, dir)
	if err != nil && !errors.Is(err, directory.ErrNotLogged) {
		dir.Close()
		return nil, fmt.Errorf("docking directory: empty, and importing the configuration's agencies failed (dock them with `certless agency import` or `agency dock` as the schema owner): %w", err)
	}
	if len(cs) > 0 {
		log.Info("first start: imported the configuration's agencies and record sources into the docking directory", zap.Int("entries", len(cs)))
	}
	return dir, nil
}

// applyDirectory swaps in a directory snapshot, logging what it cannot use.
func (s *service) applyDirectory(snap *directory.Snapshot) {
	for _, err := range s.docking.apply(snap) {
		s.log.Error("docking directory entry refused", zap.Error(err))
	}
	if s.lag != nil {
		s.lag.SetTopics(s.docking.topics())
	}
	if s.sources != nil {
		s.sources.route(snap, s.log)
	}
}

// ensureAgencyTopics creates the requests and receipts topics of every
// docked agency that lacks them (dock creates them on a real cluster; the
// embedded one, or a dock with --no-kafka, leaves it to the broker).
func (s *service) ensureAgencyTopics(ctx context.Context) error {
	st := s.docking.state()
	specs := make([]bkafka.TopicSpec, 0, 2*len(st.snap.Agencies))
	for id := range st.snap.Agencies {
		specs = append(specs,
			bkafka.TopicSpec{Name: s.topics.Requests(id), Partitions: s.cfg.Kafka.Partitions, ReplicationFactor: s.cfg.Kafka.ReplicationFactor},
			bkafka.TopicSpec{Name: s.topics.Receipts(id), Partitions: s.cfg.Kafka.Partitions, ReplicationFactor: s.cfg.Kafka.ReplicationFactor})
	}
	if len(specs) == 0 {
		return nil
	}
	if err := bkafka.EnsureTopics(ctx, s.kafka, specs...); err != nil {
		return fmt.Errorf("create agency topics: %w", err)
	}
	return nil
}

// followDirectory keeps the broker on the directory's newest version until
// ctx ends: keys, suspensions and the topic set follow within a poll
// interval; agreements are re-checked, since a key that arrived or left
// with the change can make or break an agreement's signature.
func (s *service) followDirectory(ctx context.Context) {
	from := s.docking.state().snap.Version
	failing := false
	s.dir.Follow(ctx, from, s.directoryPoll, func(snap *directory.Snapshot) {
		failing = false
		prev := s.docking.state().snap
		s.applyDirectory(snap)
		for id, a := range snap.Agencies {
			if old, ok := prev.Agencies[id]; !ok || old.Version != a.Version {
				s.log.Info("docking directory: agency changed", zap.String("agency", id), zap.String("status", a.Status),
					zap.String("level", a.Level), zap.String("region", a.Region), zap.Int("version", a.Version))
			}
		}
		for id := range prev.Agencies {
			if _, ok := snap.Agencies[id]; !ok {
				s.log.Info("docking directory: agency withdrawn", zap.String("agency", id))
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := s.ensureAgencyTopics(tctx); err != nil {
			s.log.Error("docking directory: topics of a docked agency", zap.Error(err))
		}
		cancel()
		s.reportAgreements(s.agreements.Reload())
	}, func(err error) {
		if !failing {
			s.log.Warn("docking directory unreadable; the broker keeps its last view", zap.Error(err))
		}
		failing = true
	})
}

// consume runs the consumer group until ctx ends, in generations: whenever
// the request topics of the docked agencies change, the current generation
// drains and commits what it has in flight, leaves the group, and a new
// consumer joins with the new set (kafka-go's group subscription is fixed
// per reader). Offsets are the group's, so nothing is skipped or read twice
// beyond what is uncommitted at the switch (redelivered; the store dedupes).
func (s *service) consume(ctx context.Context) error {
	for {
		topics := s.docking.topics()
		if len(topics) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.docking.topicsChanged:
				continue
			}
		}
		c, err := bkafka.NewConsumer(s.kafka, bkafka.ConsumerOptions{
			GroupID: s.cfg.Kafka.GroupID, Topics: topics,
			SessionTimeout: s.cfg.Kafka.SessionTimeout.D(), RebalanceTimeout: s.cfg.Kafka.RebalanceTimeout.D(),
			MaxBytes: s.cfg.Limits.MaxMessageBytes * 4, Logger: s.log.Named("kafka"),
		})
		if err != nil {
			return err
		}
		gen, stop := context.WithCancel(ctx)
		go func() {
			for {
				select {
				case <-s.docking.topicsChanged:
					if !slices.Equal(s.docking.topics(), topics) {
						stop()
						return
					}
				case <-gen.Done():
					return
				}
			}
		}()
		r := *s.runner
		r.Consumer = consumerAdapter{c}
		err = r.Run(gen)
		stop()
		_ = c.Close()
		if err != nil || ctx.Err() != nil {
			return err
		}
		s.log.Info("docked agencies changed: rejoining the consumer group", zap.Int("request_topics", len(s.docking.topics())))
	}
}
