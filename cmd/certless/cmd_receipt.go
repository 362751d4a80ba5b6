package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/translog/witness"
)

func newReceiptCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "receipt",
		Short: "Receipt bundles: a receipt with its transparency-log proof, checked offline",
		Args:  cobra.NoArgs,
	}
	var id, agency, out string
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
			b, err := receiptBundle(cmd.Context(), s, id, agency, quorum)
			if err != nil {
				return err
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
	proof.Flags().IntVar(&quorum, "quorum", 0, "prefer a checkpoint with at least this many cosignatures (default: transparency.quorum)")

	var jwksFile, logKeyFile, at, brokerID, decryptFile string
	var witnessFiles []string
	var need int
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
			if brokerID == "" {
				brokerID = cfg.BrokerID
			}
			var jwks []byte
			if jwksFile != "" {
				jwks, err = readBounded(jwksFile, 1<<20)
			} else {
				jwks, err = os.ReadFile(keys.JWKSPath(cfg.KeysDir, brokerID))
			}
			if err != nil {
				return fmt.Errorf("broker keys: %w", err)
			}
			bk, err := client.BrokerKeys(brokerID, jwks)
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
			checks, _ := client.VerifyBundle(b, bk, pol, e)
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
	cmd.AddCommand(proof, verify)
	return cmd
}

// receiptBundle builds the bundle of the decision id names.
func receiptBundle(ctx context.Context, s store.Store, id, agency string, quorum int) (client.Bundle, error) {
	digest := id
	if !strings.HasPrefix(id, "sha256:") {
		if a, rid, ok := strings.Cut(id, "/"); ok && agency == "" {
			agency, id = a, rid
		}
		if agency == "" {
			return client.Bundle{}, usagef("--id %q is not a request digest: give AGENCY/REQUEST_ID or --agency", id)
		}
		d, ok, err := s.DigestByRequestID(ctx, agency, id)
		if err != nil {
			return client.Bundle{}, err
		}
		if !ok {
			return client.Bundle{}, fmt.Errorf("no decision for request %s of %s", id, agency)
		}
		digest = d
	}
	d, ok, err := s.Get(ctx, digest)
	if err != nil {
		return client.Bundle{}, err
	}
	if !ok {
		return client.Bundle{}, fmt.Errorf("no decision for request %s", digest)
	}
	if d.LeafIndex < 0 {
		return client.Bundle{}, fmt.Errorf("decision %s was made before the transparency log existed: it has no leaf", digest)
	}
	cp, err := s.CheckpointCovering(ctx, d.LeafIndex, quorum)
	if err != nil {
		return client.Bundle{}, err
	}
	if cp == nil {
		return client.Bundle{}, fmt.Errorf("leaf %d of %s is not under a checkpoint yet; the broker checkpoints every second, try again", d.LeafIndex, digest)
	}
	c, err := translog.ParseCheckpointBody(cp)
	if err != nil {
		return client.Bundle{}, err
	}
	rp, err := tlog.ProveRecord(c.N, d.LeafIndex, translog.HashReader(ctx, s))
	if err != nil {
		return client.Bundle{}, fmt.Errorf("inclusion proof of leaf %d in %d: %w", d.LeafIndex, c.N, err)
	}
	p := translog.Proof{Leaf: d.Leaf, Index: d.LeafIndex, Hashes: rp, Checkpoint: cp}
	return client.Bundle{Receipt: string(d.Receipt), Proof: string(p.Format())}, nil
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
