package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/credential"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/statuslist"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/translog/witness"
)

func newReceiptCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "receipt",
		Aliases: []string{"receipts"},
		Short:   "Receipts: an agency's receipt topic, and bundles with their transparency-log proof, checked offline",
		Args:    cobra.NoArgs,
	}
	var id, agency, out, statusOut string
	var quorum int
	proof := &cobra.Command{
		Use:   "proof --id ID [--out FILE]",
		Short: "Write the bundle of a decided request: its receipt, its leaf, the inclusion proof and a (cosigned) checkpoint",
		Long: `Writes the receipt bundle of one decided request, read from the decision
store of the configuration: the receipt as published, and a C2SP tlog-proof
of its leaf against the smallest stored checkpoint covering it that --quorum
witnesses cosigned (else the newest covering it).

ID is the request digest (sha256:<hex>, the receipt's request_digest), or
AGENCY/REQUEST_ID, or REQUEST_ID with --agency.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usagef("--id is required")
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("quorum") {
				quorum = cfg.Transparency.Quorum
			}
			s, err := store.Open(cmd.Context(), cfg.Store.DSN, store.Options{})
			if err != nil {
				return err
			}
			defer s.Close()
			b, d, err := receiptBundleOf(cmd.Context(), s, id, agency, quorum)
			if err != nil {
				return err
			}
			if statusOut != "" {
				if err := writeStatusList(cmd.Context(), g, cfg, s, d, statusOut); err != nil {
					return err
				}
			}
			enc, _ := json.MarshalIndent(b, "", "  ")
			enc = append(enc, '\n')
			if out == "" || out == "-" {
				_, err = g.stdout.Write(enc)
				return err
			}
			if err := os.WriteFile(out, enc, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s\n", out)
			return nil
		},
	}
	proof.Flags().StringVar(&id, "id", "", "request digest, AGENCY/REQUEST_ID, or REQUEST_ID with --agency")
	proof.Flags().StringVar(&agency, "agency", "", "the requesting agency, when --id is a bare request id")
	proof.Flags().StringVar(&out, "out", "", "bundle file to write (default: standard output)")
	proof.Flags().StringVar(&statusOut, "status-out", "", "also write the receipt's revocation status list as it stands now (a signed vc+jwt), for receipt verify --status")
	proof.Flags().IntVar(&quorum, "quorum", 0, "prefer a checkpoint with at least this many cosignatures (default: transparency.quorum)")

	var jwksFile, logKeyFile, at, brokerID, decryptFile string
	var witnessFiles []string
	var need int
	var statusFile string
	var noStatus bool
	verify := &cobra.Command{
		Use:   "verify FILE [--jwks F] [--log-key F] [--witness F]... [--quorum K] [--at TIME]",
		Short: "Check a receipt bundle offline; one verdict line per check, non-zero exit on any failure",
		Long: `Checks a receipt bundle with public keys only, offline: the broker's
signature on the receipt, that the logged leaf is the receipt's, the leaf's
inclusion in the checkpoint, the checkpoint's signature by the log key, the
cosignatures of the named witnesses (at least --quorum of them, default all
given), and the receipt's validity window at --at (default now). A
confidential receipt (JWE) is opened with --decrypt-key, the receiving
agency's private key; without it only its logged digest can be checked.

Last, revocation: the receipt's entry (credentialStatus, W3C Bitstring
Status List) is read in the status list it names — fetched from its URL,
or offline from --status FILE (saved by 'receipt proof --status-out', or
downloaded from the URL) — signed by the broker: "revoked: <reason>,
dispute <id>, at <time>" fails the verification, otherwise "not revoked as
of <the list's time>". --no-status skips it.

Keys default to the data folder's: the broker's public keys from the keys
folder, the log key from <keys>/log.vkey. --jwks takes a JWK set file (as
served at /.well-known/jwks.json), --log-key a note verifier key file (as
served at /.well-known/log-key), --witness a witness's cosignature/v1
verifier key file, once per witness.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readBounded(args[0], client.MaxBundleSize)
			if err != nil {
				return err
			}
			b, err := client.ParseBundle(raw)
			if err != nil {
				return err
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			bk, err := brokerKeysFor(cfg, jwksFile, brokerID)
			if err != nil {
				return err
			}
			if logKeyFile == "" {
				logKeyFile = logVerifierFile(cfg)
			}
			logV, err := readVerifier(logKeyFile, func(s string) (note.Verifier, error) { return note.NewVerifier(s) })
			if err != nil {
				return fmt.Errorf("log key: %w", err)
			}
			pol := translog.Policy{Origin: logV.Name(), Log: logV, Quorum: len(witnessFiles)}
			for _, f := range witnessFiles {
				v, err := readVerifier(f, func(s string) (note.Verifier, error) { return witness.NewCosignatureVerifier(s) })
				if err != nil {
					return fmt.Errorf("witness key %s: %w", f, err)
				}
				pol.Witnesses = append(pol.Witnesses, v)
			}
			if cmd.Flags().Changed("quorum") {
				if need < 0 || need > len(pol.Witnesses) {
					return usagef("--quorum %d with %d witnesses", need, len(pol.Witnesses))
				}
				pol.Quorum = need
			}
			when := time.Now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return usagef("--at: %v", err)
				}
			}
			e := client.Expect{Now: when}
			if decryptFile != "" {
				if e.Decrypt, err = keys.ReadPrivate(decryptFile); err != nil {
					return fmt.Errorf("decryption key: %w", err)
				}
			}
			checks, rec := client.VerifyBundle(b, bk, pol, e)
			if !noStatus {
				checks = append(checks, statusCheck(cmd.Context(), rec, statusFile, bk))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			failed := 0
			for _, c := range checks {
				if c.Err != nil {
					failed++
					fmt.Fprintf(tw, "FAIL\t%s\t%v\n", c.Name, c.Err)
				} else {
					fmt.Fprintf(tw, "ok\t%s\t%s\n", c.Name, c.Note)
				}
			}
			tw.Flush()
			if failed > 0 {
				return fmt.Errorf("receipt bundle %s: %d of %d checks failed", args[0], failed, len(checks))
			}
			fmt.Fprintf(g.stdout, "receipt bundle %s verified\n", args[0])
			return nil
		},
	}
	verify.Flags().StringVar(&jwksFile, "jwks", "", "the broker's JWK set file (default: the keys folder's)")
	verify.Flags().StringVar(&brokerID, "broker-id", "", "the broker's id (default: the configuration's)")
	verify.Flags().StringVar(&logKeyFile, "log-key", "", "the log's note verifier key file (default: <keys>/log.vkey)")
	verify.Flags().StringArrayVar(&witnessFiles, "witness", nil, "a witness's verifier key file; repeat per witness")
	verify.Flags().IntVar(&need, "quorum", 0, "cosignatures required (default: every --witness)")
	verify.Flags().StringVar(&at, "at", "", "check the validity window at this RFC 3339 time (default: now)")
	verify.Flags().StringVar(&decryptFile, "decrypt-key", "", "the receiving agency's private JWK, for a confidential (JWE) receipt")
	verify.Flags().StringVar(&statusFile, "status", "", "the receipt's revocation status list, saved (vc+jwt); default: fetched from the URL the receipt names")
	verify.Flags().BoolVar(&noStatus, "no-status", false, "do not check revocation")
	cmd.AddCommand(proof, verify, receiptListCmd(g), receiptExportCmd(g), receiptTailCmd(g))
	return cmd
}

func receiptListCmd(g *globals) *cobra.Command {
	var revoked, asJSON bool
	var agency string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--revoked] [--agency A] [--limit N] [--json]",
		Short: "List receipts from the decision store, newest first; --revoked the revoked ones, with why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			s, err := store.Open(cmd.Context(), cfg.Store.DSN, store.Options{})
			if err != nil {
				return err
			}
			defer s.Close()
			type row struct {
				Receipt     string    `json:"receipt"`
				Request     string    `json:"request_digest,omitempty"`
				Agency      string    `json:"agency"`
				Type        string    `json:"type,omitempty"`
				Query       string    `json:"query,omitempty"`
				Outcome     string    `json:"outcome,omitempty"`
				StatusIndex int64     `json:"status_index"`
				Revoked     bool      `json:"revoked"`
				Reason      string    `json:"reason,omitempty"`
				Dispute     string    `json:"dispute,omitempty"`
				At          time.Time `json:"at"`
			}
			var rows []row
			if revoked {
				rs, err := s.Revocations(cmd.Context(), 0, math.MaxInt64)
				if err != nil {
					return err
				}
				for i := len(rs) - 1; i >= 0 && len(rows) < limit; i-- {
					r := rs[i]
					if agency == "" || r.Agency == agency {
						rows = append(rows, row{Receipt: r.ReceiptID, Agency: r.Agency, StatusIndex: r.StatusIndex, Revoked: true,
							Reason: r.Reason, Dispute: r.DisputeID, At: r.At})
					}
				}
			} else {
				ds, err := s.Recent(cmd.Context(), agency, limit)
				if err != nil {
					return err
				}
				for _, d := range ds {
					rows = append(rows, row{Receipt: d.ReceiptID, Request: d.Digest, Agency: d.Agency, Type: d.Type, Query: d.QueryType,
						Outcome: d.Outcome, StatusIndex: d.StatusIndex, Reason: d.Reason, At: d.DecidedAt})
				}
			}
			if asJSON {
				return writeAgencyJSON(g.stdout, rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			if revoked {
				fmt.Fprintln(tw, "receipt\tagency\trevoked\treason\tdispute\tstatus index\t")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", r.Receipt, r.Agency, r.At.Format(time.RFC3339), r.Reason, r.Dispute, r.StatusIndex)
				}
			} else {
				fmt.Fprintln(tw, "receipt\tagency\tdecided\ttype\tquery\toutcome\treason\t")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Receipt, r.Agency, r.At.Format(time.RFC3339), r.Type, r.Query, r.Outcome, r.Reason)
				}
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&revoked, "revoked", false, "only revoked receipts, with the reason and the dispute")
	fl.StringVar(&agency, "agency", "", "only receipts issued to this agency")
	fl.IntVar(&limit, "limit", 50, "at most this many")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func receiptTailCmd(g *globals) *cobra.Command {
	var as, jwksURL string
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "tail --as AGENCY [--follow] [--json]",
		Short: "Print the receipts on an agency's receipt topic, one line each, verified",
		Long: `Prints every receipt on the agency's receipt topic (<prefix>AGENCY.receipts,
from the configuration's Kafka settings), oldest first per partition, then
exits; with --follow it keeps printing new ones until interrupted. Also
'certless receipts tail'.

Each receipt is verified as 'certless request' does (the broker's JWKS
from the keys folder or --jwks-url; a confidential receipt opened with the
agency's encryption key), as of when it was issued: one line with the time
it was issued, the decision and reason, the query, the request id and
digest, and the receipt id, marked "expired" when its validity has ended.
A record that does not verify is listed with why. Answers are not printed.`,
		Example: `  certless receipt tail --as court-changchun
  certless receipts tail --as court-changchun --follow --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" {
				return usagef("--as is required")
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			c, err := newAgencyClient(cmd.Context(), cfg, as, jwksURL)
			if err != nil {
				return err
			}
			defer c.Close()
			p := receiptTailPrinter{w: g.stdout, c: c, json: asJSON, now: time.Now}
			return streamTopic(cmd.Context(), c.Kafka, c.ReceiptTopic, follow, p.print)
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the agency whose receipt topic to read")
	cmd.Flags().StringVar(&jwksURL, "jwks-url", "", "fetch the broker's JWKS from this base URL instead of the keys folder")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new receipts until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object a line")
	return cmd
}

// receiptTailLine is what receipt tail prints of one record.
type receiptTailLine struct {
	IssuedAt      time.Time `json:"issued_at"`
	Decision      string    `json:"decision"`
	Reason        string    `json:"reason,omitempty"`
	Query         string    `json:"query,omitempty"`
	RequestID     string    `json:"request_id"`
	RequestDigest string    `json:"request_digest"`
	ReceiptID     string    `json:"receipt_id"`
	ExpiresAt     time.Time `json:"expires_at"`
	Expired       bool      `json:"expired"`
	Partition     int       `json:"partition"`
	Offset        int64     `json:"offset"`
}

type receiptTailPrinter struct {
	w    io.Writer
	c    *client.Client
	json bool
	now  func() time.Time
}

func (p receiptTailPrinter) print(rec client.Record) error {
	r, err := verifyAsIssued(rec.Value, p.c)
	if err != nil {
		if p.json {
			b, _ := json.Marshal(map[string]any{"partition": rec.Partition, "offset": rec.Offset, "error": err.Error()})
			_, err = fmt.Fprintf(p.w, "%s\n", b)
			return err
		}
		_, err = fmt.Fprintf(p.w, "partition %d offset %d: does not verify: %v\n", rec.Partition, rec.Offset, err)
		return err
	}
	l := receiptTailLine{IssuedAt: r.Envelope.IssuedAt.UTC(), Decision: r.Decision, Reason: r.Reason, Query: r.Query,
		RequestID: r.RequestID, RequestDigest: r.RequestDigest, ReceiptID: r.Envelope.ID, ExpiresAt: r.Envelope.ExpiresAt.UTC(),
		Expired: !r.Envelope.ExpiresAt.After(p.now()), Partition: rec.Partition, Offset: rec.Offset}
	if p.json {
		b, _ := json.Marshal(l) // plain struct: cannot fail
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	expired := ""
	if l.Expired {
		expired = "  expired"
	}
	_, err = fmt.Fprintf(p.w, "%s  %-14s  %-22s  %-18s  request=%s  %s  receipt=%s%s\n", l.IssuedAt.Format(time.RFC3339),
		l.Decision, orDash(l.Reason), orDash(l.Query), l.RequestID, l.RequestDigest, l.ReceiptID, expired)
	return err
}

// verifyAsIssued verifies a receipt of c's agency as of when it was issued,
// so that one whose validity has since ended is still shown, verified.
func verifyAsIssued(raw []byte, c *client.Client) (*client.Receipt, error) {
	e := client.Expect{RequestAgency: c.Agency, Decrypt: c.Decrypt}
	r, err := client.VerifyReceipt(raw, c.Broker, e)
	if !errors.Is(err, client.ErrReceiptExpired) {
		return r, err
	}
	jws := raw
	if bytes.Count(raw, []byte(".")) == 4 && c.Decrypt != nil {
		if jws, err = envelope.Decrypt(raw, c.Decrypt); err != nil {
			return nil, err
		}
	}
	pl, err := storedPayload(jws)
	if err != nil {
		return nil, err
	}
	e.Now, e.Decrypt = pl.IssuedAt, nil
	return client.VerifyReceipt(jws, c.Broker, e)
}

// receiptBundle builds the bundle of the decision id names.
func receiptBundle(ctx context.Context, s store.Store, id, agency string, quorum int) (client.Bundle, error) {
	b, _, err := receiptBundleOf(ctx, s, id, agency, quorum)
	return b, err
}

// decisionOf finds the decision ID names: a request digest, AGENCY/REQUEST_ID,
// or REQUEST_ID of agency.
func decisionOf(ctx context.Context, s store.Store, id, agency string) (store.Decision, error) {
	digest := id
	if !strings.HasPrefix(id, "sha256:") {
		if a, rid, ok := strings.Cut(id, "/"); ok && agency == "" {
			agency, id = a, rid
		}
		if agency == "" {
			return store.Decision{}, usagef("--id %q is not a request digest: give AGENCY/REQUEST_ID or --agency", id)
		}
		d, ok, err := s.DigestByRequestID(ctx, agency, id)
		if err != nil {
			return store.Decision{}, err
		}
		if !ok {
			return store.Decision{}, fmt.Errorf("no decision for request %s of %s", id, agency)
		}
		digest = d
	}
	d, ok, err := s.Get(ctx, digest)
	if err != nil {
		return store.Decision{}, err
	}
	if !ok {
		return store.Decision{}, fmt.Errorf("no decision for request %s", digest)
	}
	return d, nil
}

// receiptBundleOf is receiptBundle that also returns the decision.
func receiptBundleOf(ctx context.Context, s store.Store, id, agency string, quorum int) (client.Bundle, store.Decision, error) {
	d, err := decisionOf(ctx, s, id, agency)
	if err != nil {
		return client.Bundle{}, store.Decision{}, err
	}
	digest := d.Digest
	if d.LeafIndex < 0 {
		return client.Bundle{}, store.Decision{}, fmt.Errorf("decision %s was made before the transparency log existed: it has no leaf", digest)
	}
	cp, err := s.CheckpointCovering(ctx, d.LeafIndex, quorum)
	if err != nil {
		return client.Bundle{}, store.Decision{}, err
	}
	if cp == nil {
		return client.Bundle{}, store.Decision{}, fmt.Errorf("leaf %d of %s is not under a checkpoint yet; the broker checkpoints every second, try again", d.LeafIndex, digest)
	}
	c, err := translog.ParseCheckpointBody(cp)
	if err != nil {
		return client.Bundle{}, store.Decision{}, err
	}
	rp, err := tlog.ProveRecord(c.N, d.LeafIndex, translog.HashReader(ctx, s))
	if err != nil {
		return client.Bundle{}, store.Decision{}, fmt.Errorf("inclusion proof of leaf %d in %d: %w", d.LeafIndex, c.N, err)
	}
	p := translog.Proof{Leaf: d.Leaf, Index: d.LeafIndex, Hashes: rp, Checkpoint: cp}
	return client.Bundle{Receipt: string(d.Receipt), Proof: string(p.Format())}, d, nil
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, st.Size(), max)
	}
	return os.ReadFile(path)
}

func readVerifier(path string, parse func(string) (note.Verifier, error)) (note.Verifier, error) {
	b, err := readBounded(path, 4096)
	if err != nil {
		return nil, err
	}
	v, err := parse(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// writeStatusList writes the revocation status list of decision d's receipt
// as it stands now, signed with the broker's key from the keys folder, to
// path. The list's URL is the one the receipt names (read from the
// receipt's payload; for a confidential receipt from the configuration).
func writeStatusList(ctx context.Context, g *globals, cfg *config.Config, s store.Store, d store.Decision, path string) error {
	if d.StatusIndex < 0 {
		return fmt.Errorf("the receipt of %s was issued before revocation status lists: it has no entry", d.Digest)
	}
	n := d.StatusIndex / statuslist.Size
	url := ""
	if p, err := storedPayload(d.Receipt); err == nil {
		var body schemas.Receipt
		if json.Unmarshal(p.Body, &body) == nil && body.CredentialStatus != nil {
			url = body.CredentialStatus.StatusListCredential
		}
	}
	if url == "" {
		base := cfg.HTTP.PublicURL
		if base == "" {
			base = "http://" + cfg.HTTP.Addr
		}
		url = statuslist.ListURL(strings.TrimRight(base, "/")+"/status", n)
	}
	key, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
	if err != nil {
		return fmt.Errorf("the broker's signing key: %w", err)
	}
	jwt, err := signedStatusList(ctx, s, url, cfg.BrokerID, key, n)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, jwt, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "wrote %s (status list %s as of now)\n", path, url)
	return nil
}

// storedPayload reads the payload of a receipt the broker stored, without
// verifying it (the URL it names is all that is read; verify checks the
// rest). A JWE has none to read.
func storedPayload(jws []byte) (envelope.Payload, error) {
	parts := strings.Split(string(jws), ".")
	if len(parts) != 3 {
		return envelope.Payload{}, errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return envelope.Payload{}, err
	}
	var p envelope.Payload
	return p, json.Unmarshal(b, &p)
}

// statusCheck is the revocation verdict of a verified receipt, its status
// list read from file or, without one, fetched from the URL it names.
func statusCheck(ctx context.Context, r *client.Receipt, file string, b *client.Broker) client.Check {
	return statusVerdict(r, b, func() ([]byte, error) {
		if file != "" {
			return readBounded(file, 4<<20)
		}
		return client.FetchStatusList(ctx, r)
	})
}

// statusVerdict is the revocation verdict of a verified receipt against the
// signed status list that list returns.
func statusVerdict(r *client.Receipt, b *client.Broker, list func() ([]byte, error)) client.Check {
	c := client.Check{Name: "status"}
	if r == nil {
		c.Err = errors.New("the receipt could not be read, so neither could its revocation status")
		return c
	}
	if r.CredentialStatus == nil {
		// Signed without one: issued before status lists, and so never
		// revocable.
		c.Note = "no revocation entry (issued before status lists; it cannot be revoked)"
		return c
	}
	l, err := list()
	if err != nil {
		c.Err = fmt.Errorf("status list: %w", err)
		return c
	}
	chk, err := client.CheckStatus(r, l, b)
	switch {
	case err != nil:
		c.Err = err
	case chk.Revoked:
		c.Err = fmt.Errorf("revoked: %s, dispute %s, at %s", chk.Why.Reason, chk.Why.Dispute, chk.Why.At.UTC().Format(time.RFC3339))
	default:
		c.Note = "not revoked as of " + chk.AsOf.UTC().Format(time.RFC3339) + " (" + r.CredentialStatus.StatusListCredential + ")"
	}
	return c
}

func receiptExportCmd(g *globals) *cobra.Command {
	var id, agency, format, out, decryptFile string
	cmd := &cobra.Command{
		Use:   "export --id ID --format vc [--out FILE] [--decrypt-key F]",
		Short: "Write a receipt as a W3C Verifiable Credential (Data Model 2.0, vc+jwt signed by the broker)",
		Long: `Writes the receipt of one decided request as a W3C Verifiable Credential
(Data Model 2.0) secured with JOSE as a vc+jwt: issuer the broker
(urn:certless:<broker id>), credentialSubject the decision and the minimised
answer, credentialStatus the receipt's entry in the broker's revocation
status list, evidence its transparency-log leaf; signed with the broker's
current key from the keys folder. A confidential receipt needs the receiving
agency's --decrypt-key.

ID is the request digest, AGENCY/REQUEST_ID, or REQUEST_ID with --agency.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usagef("--id is required")
			}
			if format != "vc" {
				return usagef("--format %q: the one format is vc", format)
			}
			ctx := cmd.Context()
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			s, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
			if err != nil {
				return err
			}
			defer s.Close()
			d, err := decisionOf(ctx, s, id, agency)
			if err != nil {
				return err
			}
			jws := d.Receipt
			if bytes.Count(jws, []byte(".")) == 4 { // a compact JWE
				if decryptFile == "" {
					return fmt.Errorf("the receipt of %s is confidential: give the receiving agency's --decrypt-key", d.Digest)
				}
				k, err := keys.ReadPrivate(decryptFile)
				if err != nil {
					return fmt.Errorf("decryption key: %w", err)
				}
				if jws, err = envelope.Decrypt(jws, k); err != nil {
					return err
				}
			}
			reg, err := keys.LoadDir(cfg.KeysDir)
			if err != nil {
				return err
			}
			set, err := schemas.Default()
			if err != nil {
				return err
			}
			v, err := envelope.VerifyOffline(jws, reg, set)
			if err != nil {
				return fmt.Errorf("the stored receipt does not verify: %w", err)
			}
			var body schemas.Receipt
			if err := json.Unmarshal(v.Body, &body); err != nil {
				return err
			}
			c, err := credential.FromReceipt(v.Payload, body, cfg.BrokerID, cfg.LogOrigin(), d.LeafIndex)
			if err != nil {
				return err
			}
			key, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
			if err != nil {
				return fmt.Errorf("the broker's signing key: %w", err)
			}
			jwt, err := credential.Sign(key, c)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = fmt.Fprintf(g.stdout, "%s\n", jwt)
				return err
			}
			if err := os.WriteFile(out, jwt, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s (%s, %s)\n", out, c.ID, credential.MediaType)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&id, "id", "", "request digest, AGENCY/REQUEST_ID, or REQUEST_ID with --agency")
	fl.StringVar(&agency, "agency", "", "the requesting agency, when --id is a bare request id")
	fl.StringVar(&format, "format", "vc", "vc: a W3C Verifiable Credential secured as a vc+jwt")
	fl.StringVar(&out, "out", "", "file to write (default: standard output)")
	fl.StringVar(&decryptFile, "decrypt-key", "", "the receiving agency's private JWK, for a confidential (JWE) receipt")
	return cmd
}

// brokerKeysFor reads the broker's public keys for an offline check: the
// JWK set file given, else the keys folder's set of brokerID (default the
// configuration's broker).
func brokerKeysFor(cfg *config.Config, jwksFile, brokerID string) (*client.Broker, error) {
	if brokerID == "" {
		brokerID = cfg.BrokerID
	}
	var jwks []byte
	var err error
	if jwksFile != "" {
		jwks, err = readBounded(jwksFile, 1<<20)
	} else {
		jwks, err = os.ReadFile(keys.JWKSPath(cfg.KeysDir, brokerID))
	}
	if err != nil {
		return nil, fmt.Errorf("broker keys: %w", err)
	}
	return client.BrokerKeys(brokerID, jwks)
}
