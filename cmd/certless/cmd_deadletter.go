package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
)

func newDeadLetterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletter",
		Short: "The broker's dead-letter topic: messages it could not answer with a receipt",
		Args:  cobra.NoArgs,
	}
	var follow, asJSON, raw bool
	tail := &cobra.Command{
		Use:   "tail [--follow] [--json] [--raw]",
		Short: "Print the dead letters on the topic, one line each (never the message unless --raw)",
		Long: `Prints every record on the broker's dead-letter topic (<prefix>certless.deadletter,
from the configuration's Kafka settings), oldest first per partition, then
exits; with --follow it keeps printing new ones until interrupted.

One line per dead letter: when the broker received the message, the reason,
the key id the message names, the agency of the topic it came on, that
topic, partition and offset, and the digest of its bytes (the request
digest 'certless request' prints). The message itself is personal data
and is never printed unless --raw. --json prints one JSON object a line.`,
		Example: `  certless deadletter tail
  certless deadletter tail --follow --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			topics := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
			p := deadLetterPrinter{w: g.stdout, topics: topics, json: asJSON, raw: raw}
			return streamTopic(cmd.Context(), kafkaConfig(cfg.Kafka), topics.DeadLetter(), follow, p.print)
		},
	}
	tail.Flags().BoolVar(&follow, "follow", false, "keep printing new dead letters until interrupted")
	tail.Flags().BoolVar(&asJSON, "json", false, "one JSON object a line")
	tail.Flags().BoolVar(&raw, "raw", false, "also print the message as received (personal data: handle with care)")
	cmd.AddCommand(tail)
	return cmd
}

// deadLetterLine is what deadletter tail prints of one record.
type deadLetterLine struct {
	ReceivedAt time.Time `json:"received_at"`
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail,omitempty"`
	KID        string    `json:"kid,omitempty"`
	Agency     string    `json:"agency,omitempty"`
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Digest     string    `json:"digest"`
	Size       int       `json:"size"`
	Hint       string    `json:"hint,omitempty"`
	// Message is set with --raw only.
	Message *string `json:"message,omitempty"`
}

type deadLetterPrinter struct {
	w         io.Writer
	topics    broker.Topics
	json, raw bool
}

func (p deadLetterPrinter) print(rec client.Record) error {
	var dl broker.DeadLetter
	if err := json.Unmarshal(rec.Value, &dl); err != nil {
		fmt.Fprintf(p.w, "partition %d offset %d: not a dead-letter record: %v\n", rec.Partition, rec.Offset, err)
		return nil
	}
	l := deadLetterLine{ReceivedAt: dl.ReceivedAt.UTC(), Reason: dl.Reason, Detail: dl.Detail, KID: dl.KID, Topic: dl.Topic,
		Partition: dl.Partition, Offset: dl.Offset, Digest: dl.Digest, Size: dl.Size, Hint: deadLetterHint(dl.Reason)}
	l.Agency, _ = p.topics.AgencyOfRequests(dl.Topic)
	if p.raw {
		m := string(dl.Message)
		l.Message = &m
	}
	if p.json {
		b, _ := json.Marshal(l) // plain struct: cannot fail
		_, err := fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(p.w, "%s  %-22s  kid=%s  agency=%s  topic=%s  partition=%d  offset=%d  %s\n",
		l.ReceivedAt.Format(time.RFC3339), l.Reason, orDash(l.KID), orDash(l.Agency), l.Topic, l.Partition, l.Offset, l.Digest)
	if err == nil && p.raw {
		if len(dl.Message) == 0 {
			_, err = fmt.Fprintf(p.w, "  message not kept (%d bytes, over the copy limit)\n", dl.Size)
		} else {
			_, err = fmt.Fprintf(p.w, "  message %s\n", dl.Message)
		}
	}
	return err
}

// deadLetterHints say, per dead-letter reason, what the sender most likely
// has to do.
var deadLetterHints = map[string]string{
	string(envelope.ReasonTooLarge):         "the message is over the broker's limits.max_message_bytes (default 256 KiB): send less",
	string(envelope.ReasonMalformed):        "not a compact JWS with a JSON header and payload: build it with client.Build or as in the README's \"Building a request in another language\"",
	string(envelope.ReasonAlgNotAllowed):    "sign with EdDSA or ES256 (certless keys generate --agency A --alg EdDSA)",
	string(envelope.ReasonUnknownKey):       "is this key registered with the running broker? (certless keys import --agency A FILE into its keys folder, or certless agency dock)",
	string(envelope.ReasonSignatureInvalid): "the signature does not verify with the key the broker holds under that kid: was the key pair regenerated without registering the new public key? (certless keys import)",
	string(envelope.ReasonKeyRevoked):       "the key is revoked: generate a new one (certless keys generate --agency A) and register it with the broker",
	string(envelope.ReasonAgencyMismatch):   "payload.agency is not the agency of the signing key: sign as the agency you say you are",
	broker.ReasonTopicMismatch:              "sent on another agency's request topic, or the same bytes were decided for another agency: send on <prefix><agency>.requests of the signing agency",
	broker.ReasonUnknownTopic:               "the topic is not a request topic: send on <prefix><agency>.requests",
	broker.ReasonNoEncryptionKey:            "the agency gets encrypted receipts but the broker has no usable encryption key of it: register one (certless keys generate --agency A --alg ECDH-ES+A256KW, then keys import)",
	broker.ReasonInternal:                   "the broker failed on this message (a bug): the operator finds it in the broker's log and certless deadletter tail",
	broker.ReasonRetriesExhausted:           "the broker's store, sources or Kafka failed on every attempt: try again later",
}

// deadLetterHint is the hint for reason, or a pointer to the README.
func deadLetterHint(reason string) string {
	if h, ok := deadLetterHints[reason]; ok {
		return h
	}
	return "see the reason codes in the README's \"Message formats\""
}

// maxTopicRecords bounds what streamTopic holds of one partition's history.
const maxTopicRecords = 1_000_000

// streamTopic calls each for every record on topic, every partition from its
// start to the end it sees, and then, with follow, for every record that
// arrives until ctx ends (which is then not an error). The tail of new
// records starts before the history is read, so that none is missed, and
// what the history already gave is skipped.
func streamTopic(ctx context.Context, kcfg bkafka.Config, topic string, follow bool, each func(client.Record) error) error {
	var tail *client.Tail
	if follow {
		var err error
		if tail, err = client.TailTopic(ctx, kcfg, topic); err != nil {
			return bkafka.Explain(ctx, kcfg, err)
		}
		defer tail.Close()
	}
	parts, err := topicPartitions(ctx, kcfg, topic)
	if err != nil {
		return bkafka.Explain(ctx, kcfg, err)
	}
	seen := map[int]int64{}
	for _, p := range parts {
		seen[p] = -1
		recs, err := client.ReadTopic(ctx, kcfg, topic, p, maxTopicRecords)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := each(r); err != nil {
				return err
			}
			seen[p] = r.Offset
		}
	}
	if !follow {
		return nil
	}
	for {
		r, err := tail.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if r.Offset <= seen[r.Partition] {
			continue
		}
		if err := each(r); err != nil {
			return err
		}
	}
}

// topicPartitions lists the partitions of topic.
func topicPartitions(ctx context.Context, kcfg bkafka.Config, topic string) ([]int, error) {
	dialer, err := kcfg.Dialer()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range kcfg.Brokers {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps, err := conn.ReadPartitions(topic)
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		out := make([]int, len(ps))
		for i, p := range ps {
			out[i] = p.ID
		}
		return out, nil
	}
	return nil, fmt.Errorf("dial Kafka %v: %w", kcfg.Brokers, errors.Join(errs...))
}
