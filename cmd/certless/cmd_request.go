package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// Exit codes of certless request beside exitOK (answered), exitFailure
// (no receipt: Kafka, keys, timeout) and exitUsage (bad flags, an invalid
// ID number or query type: nothing was sent). Documented in the README's
// "The CLI".
const (
	exitNotFound      = 3
	exitDenied        = 4
	exitRejected      = 5
	exitUnavailable   = 6
	exitInternalError = 7
	exitDeadLetter    = 8
)

// exitError ends a command with its own exit code (see run).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }

// decisionExit is the exit code of a receipt's decision.
func decisionExit(decision string) int {
	switch decision {
	case schemas.DecisionAnswered:
		return exitOK
	case schemas.DecisionNotFound:
		return exitNotFound
	case schemas.DecisionDenied:
		return exitDenied
	case schemas.DecisionRejected:
		return exitRejected
	case schemas.DecisionUnavailable:
		return exitUnavailable
	case schemas.DecisionInternalError:
		return exitInternalError
	}
	return exitFailure
}

// requestExample is the help example: a subject of the dev dataset with a
// criminal record (TestRequestHelpExampleIsValid keeps it so).
const requestExample = `  certless request --as court-changchun --query criminal_record --subject 220323198310238953 --name 董然德

  # more subjects of the dev dataset to try:
  certless records sample`

func newRequestCmd(g *globals) *cobra.Command {
	var (
		as, query, subject, name, relSubject, relName string
		basis, caseRef, jwksURL                       string
		timeout                                       time.Duration
		asJSON                                        bool
	)
	cmd := &cobra.Command{
		Use:   "request --as AGENCY --query TYPE --subject ID --name NAME",
		Short: "Send one signed verification request as an agency and print the verified receipt",
		Long: `Build a verification request, sign it with the agency's key from the keys
folder, send it to the agency's request topic, wait for the receipt and
verify it offline against the broker's JWKS (from the keys folder, or
--jwks-url). Query types: identity, household, kinship, former_names,
residence, hukou_cancellation, criminal_record.

The ID number and the query type are checked before anything is sent. While
waiting, the broker's dead-letter topic is watched too: a request the broker
cannot answer with a receipt (an unregistered or revoked key...) fails at
once with the reason and a hint instead of at --timeout.

Exit codes: 0 answered, 3 not_found, 4 denied, 5 rejected, 6 unavailable,
7 internal_error, 8 dead-lettered (no receipt), 1 any other failure (no
receipt within --timeout, Kafka, keys), 2 usage (nothing sent).`,
		Example: requestExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" || query == "" || subject == "" || name == "" {
				return usagef("--as, --query, --subject and --name are required")
			}
			if (relSubject == "") != (relName == "") {
				return usagef("--related-subject and --related-name go together")
			}
			if err := checkRequestInput(query, subject, relSubject); err != nil {
				return err
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := newAgencyClient(ctx, cfg, as, jwksURL)
			if err != nil {
				return err
			}
			defer c.Close()
			key, err := keys.SigningKey(cfg.KeysDir, as, time.Now())
			if err != nil {
				return fmt.Errorf("signing key of %s: %w", as, err)
			}
			req := client.Request{Query: query, Subject: schemas.Subject{IDNumber: subject, Name: name}, Basis: basis, CaseRef: caseRef}
			if relSubject != "" {
				req.Related = &schemas.Subject{IDNumber: relSubject, Name: relName}
			}
			signed, err := client.Build(key, req, time.Now())
			if err != nil {
				return err
			}
			topics := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
			r, dl, err := sendAndAwait(ctx, g, c, topics.DeadLetter(), signed)
			switch {
			case errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil:
				return fmt.Errorf("no receipt for request %s within %s: is the broker running (certless dev / serve) and reading %s? "+
					"(certless deadletter tail shows what it could not answer): %w", signed.Digest, timeout, c.RequestTopic, err)
			case err != nil:
				return err
			case dl != nil:
				return deadLettered(g, topics, signed, dl, asJSON)
			}
			if asJSON {
				err = printReceiptJSON(g.stdout, r)
			} else {
				err = printReceipt(g.stdout, r)
			}
			if err != nil {
				return err
			}
			if code := decisionExit(r.Decision); code != exitOK {
				msg := "request " + r.Decision
				if r.Reason != "" {
					msg += ": " + r.Reason
				}
				if r.RetryAfter > 0 {
					msg += fmt.Sprintf(" (retry after %ds)", r.RetryAfter)
				}
				return exitError{code: code, err: errors.New(msg)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&as, "as", "", "the requesting agency's id (its key must be in the keys folder)")
	f.StringVar(&query, "query", "", "query type")
	f.StringVar(&subject, "subject", "", "the subject's 18-character resident ID number (dev subjects: certless records sample)")
	f.StringVar(&name, "name", "", "the subject's name")
	f.StringVar(&relSubject, "related-subject", "", "kinship: the other person's ID number")
	f.StringVar(&relName, "related-name", "", "kinship: the other person's name")
	f.StringVar(&basis, "purpose", "case-handling", "lawful basis of the request")
	f.StringVar(&caseRef, "case-ref", "CLI-"+time.Now().Format("20060102-150405"), "the agency's case reference")
	f.StringVar(&jwksURL, "jwks-url", "", "fetch the broker's JWKS from this base URL (e.g. http://127.0.0.1:8080) instead of the keys folder")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the receipt")
	f.BoolVar(&asJSON, "json", false, "print the verified receipt as JSON")
	return cmd
}

// checkRequestInput refuses, as a usage error, what the broker would
// reject anyway: an unknown query type, an ID number that is not a valid
// resident ID number, kinship without the other person. Errors name the
// flag and the part that is wrong, never the number.
func checkRequestInput(query, subject, relSubject string) error {
	if !adapters.QueryType(query).Valid() {
		names := make([]string, 0, 8)
		for _, q := range adapters.AllQueryTypes() {
			names = append(names, string(q))
		}
		return usagef("--query %q is not a query type (one of %s)", clip(query, 40), strings.Join(names, ", "))
	}
	if err := residentid.Validate(subject); err != nil {
		return usagef("--subject: %w (dev subjects: certless records sample)", err)
	}
	if relSubject != "" {
		if err := residentid.Validate(relSubject); err != nil {
			return usagef("--related-subject: %w", err)
		}
	}
	if adapters.QueryType(query) == adapters.QueryKinship && relSubject == "" {
		return usagef("--query kinship needs --related-subject and --related-name")
	}
	return nil
}

// clip bounds how much of a user's input an error repeats.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// sendAndAwait sends signed and waits for its verified receipt or, on
// dlqTopic, its dead letter, whichever comes first. Both are watched from
// before the send, so neither can be missed. When the dead-letter topic
// cannot be read (an agency's Kafka user may not be allowed to), it says
// so on stderr and waits for the receipt alone.
func sendAndAwait(ctx context.Context, g *globals, c *client.Client, dlqTopic string, signed client.Signed) (*client.Receipt, *broker.DeadLetter, error) {
	w, err := c.Watch(ctx)
	if err != nil {
		return nil, nil, bkafka.Explain(ctx, c.Kafka, err)
	}
	defer w.Close()
	dlq, err := client.TailTopic(ctx, c.Kafka, dlqTopic)
	if err != nil {
		fmt.Fprintf(g.stderr, "certless: not watching the dead-letter topic %s (%v): a request the broker cannot answer ends only at --timeout\n", dlqTopic, err)
	} else {
		defer dlq.Close()
	}
	if err := c.Send(ctx, signed); err != nil {
		return nil, nil, bkafka.Explain(ctx, c.Kafka, err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	dead := make(chan *broker.DeadLetter, 1)
	if dlq != nil {
		go func() {
			if dl := awaitDeadLetter(wctx, g, dlq, signed.Digest); dl != nil {
				dead <- dl
			}
		}()
	}
	type result struct {
		r   *client.Receipt
		err error
	}
	got := make(chan result, 1)
	go func() {
		rs, err := w.Await(wctx, map[string]string{signed.Digest: signed.ID})
		got <- result{rs[signed.Digest], err}
	}()
	select {
	case dl := <-dead:
		return nil, dl, nil
	case res := <-got:
		return res.r, nil, res.err
	}
}

// awaitDeadLetter reads dlq until the dead letter of digest arrives, and
// returns it; nil when ctx ends or the topic cannot be read (said on
// stderr).
func awaitDeadLetter(ctx context.Context, g *globals, dlq *client.Tail, digest string) *broker.DeadLetter {
	for {
		rec, err := dlq.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(g.stderr, "certless: stopped watching the dead-letter topic: %v\n", err)
			}
			return nil
		}
		if string(rec.Key) != digest {
			continue
		}
		var dl broker.DeadLetter
		if json.Unmarshal(rec.Value, &dl) == nil && dl.Digest == digest {
			return &dl
		}
	}
}

// deadLettered reports the dead letter of signed: on stdout what it says
// (never the message), and as the error its reason and a hint.
func deadLettered(g *globals, topics broker.Topics, signed client.Signed, dl *broker.DeadLetter, asJSON bool) error {
	l := deadLetterPrinter{w: g.stdout, topics: topics, json: true}
	if asJSON {
		if err := l.print(client.Record{Value: mustJSON(dl)}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "request\t%s  %s\n", signed.ID, signed.Digest)
		fmt.Fprintf(tw, "dead letter\t%s (no receipt: the broker could not answer the sender)\n", dl.Reason)
		if dl.Detail != "" {
			fmt.Fprintf(tw, "detail\t%s\n", dl.Detail)
		}
		fmt.Fprintf(tw, "at\t%s partition %d offset %d, %s\n", dl.Topic, dl.Partition, dl.Offset, dl.ReceivedAt.UTC().Format(time.RFC3339))
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return exitError{code: exitDeadLetter, err: fmt.Errorf("request dead-lettered: %s: %s", dl.Reason, deadLetterHint(dl.Reason))}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v) // plain structs only
	return b
}

// newAgencyClient builds the client of agency from the configuration.
func newAgencyClient(ctx context.Context, cfg *config.Config, agency, jwksURL string) (*client.Client, error) {
	topics := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
	c := &client.Client{Kafka: kafkaConfig(cfg.Kafka), RequestTopic: topics.Requests(agency), ReceiptTopic: topics.Receipts(agency), Agency: agency}
	var err error
	if jwksURL != "" {
		c.Broker, err = client.FetchBrokerKeys(ctx, strings.TrimRight(jwksURL, "/"), cfg.BrokerID)
	} else {
		var b []byte
		if b, err = keys.ReadJWKS(cfg.KeysDir, cfg.BrokerID); err == nil {
			c.Broker, err = client.BrokerKeys(cfg.BrokerID, b)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("broker keys: %w", err)
	}
	if c.Decrypt, err = encryptionPrivate(cfg.KeysDir, agency, time.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

func printReceipt(w io.Writer, r *client.Receipt) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "receipt\t%s (verified, signed by %s)\n", r.Envelope.ID, r.Envelope.KeyID)
	fmt.Fprintf(tw, "request\t%s  %s\n", r.RequestID, r.RequestDigest)
	fmt.Fprintf(tw, "decision\t%s\n", r.Decision)
	if r.Reason != "" {
		fmt.Fprintf(tw, "reason\t%s\n", r.Reason)
	}
	if r.Detail != "" {
		fmt.Fprintf(tw, "detail\t%s\n", r.Detail)
	}
	if r.Agreement != nil {
		if r.Agreement.Version > 0 {
			fmt.Fprintf(tw, "authorised by\t%s v%d  %s\n", r.Agreement.ID, r.Agreement.Version, r.Agreement.Digest)
		} else {
			fmt.Fprintf(tw, "authorised by\t%s  %s\n", r.Agreement.ID, r.Agreement.Digest)
		}
	}
	if r.ValidUntil != nil {
		fmt.Fprintf(tw, "valid until\t%s\n", r.ValidUntil.Format(time.RFC3339))
	}
	ans, err := r.Answer()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ans))
	for k := range ans {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, _ := json.Marshal(ans[k])
		fmt.Fprintf(tw, "  %s\t%s\n", k, v)
	}
	return tw.Flush()
}

func printReceiptJSON(w io.Writer, r *client.Receipt) error {
	out := map[string]any{
		"receipt_id": r.Envelope.ID, "signed_by": r.Envelope.KeyID, "issued_at": r.Envelope.IssuedAt,
		"body": r.Receipt, "raw": string(r.Raw),
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
