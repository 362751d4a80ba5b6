package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

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
residence, hukou_cancellation, criminal_record.`,
		Example: `  certless request --as court-changchun --query criminal_record --subject 220102199003071234 --name 王伟`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" || query == "" || subject == "" || name == "" {
				return usagef("--as, --query, --subject and --name are required")
			}
			if (relSubject == "") != (relName == "") {
				return usagef("--related-subject and --related-name go together")
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
			r, err := c.Request(ctx, signed)
			if err != nil {
				return err
			}
			if asJSON {
				return printReceiptJSON(g.stdout, r)
			}
			return printReceipt(g.stdout, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&as, "as", "", "the requesting agency's id (its key must be in the keys folder)")
	f.StringVar(&query, "query", "", "query type")
	f.StringVar(&subject, "subject", "", "the subject's 18-digit resident ID number")
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
