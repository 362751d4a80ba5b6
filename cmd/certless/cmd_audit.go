package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"iter"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/torchwood"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/translog/witness"
)

// auditWorkers is how many decisions the store audit reads at once.
const auditWorkers = 4

// maxAuditNamed bounds the decisions without a leaf that one audit names.
const maxAuditNamed = 10

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit the transparency log read-only: replay it, prove a receipt's leaf, prove two checkpoints consistent",
		Args:  cobra.NoArgs,
	}
	var (
		logKey, origin string
		witnesses      []string
		quorum         int
	)
	policyFlags := func(c *cobra.Command, withWitnesses bool) {
		c.Flags().StringVar(&logKey, "log-key", "", "the log's note verifier key file (default: <keys>/log.vkey)")
		c.Flags().StringVar(&origin, "origin", "", "the log's origin (default: the --log-key's name, else the configuration's)")
		if withWitnesses {
			c.Flags().StringArrayVar(&witnesses, "witness", nil, "a witness's cosignature/v1 verifier key file; repeat per witness (default: transparency.witnesses)")
			c.Flags().IntVar(&quorum, "quorum", 0, "cosignatures the newest checkpoint needs (default: every --witness, else transparency.quorum)")
		}
	}
	policy := func(cmd *cobra.Command, cfg *config.Config) (translog.Policy, error) {
		return auditPolicy(cmd, cfg, logKey, origin, witnesses, quorum)
	}

	var (
		url         string
		known       []string
		everyQuorum bool
		verbose     bool
	)
	verify := &cobra.Command{
		Use:   "verify [--url URL] [--log-key FILE] [--origin O] [--witness VKEY_FILE]... [--quorum K]",
		Short: "Replay the whole log and check every leaf, checkpoint and decision; non-zero exit naming the first tampering",
		Long: `Replays the transparency log from its leaves and checks, read-only:

  - every leaf parses in its one canonical form, and its bytes still hash to
    the stored record hash (a leaf edited in place is named);
  - every stored hash the leaves imply is the stored one;
  - every stored checkpoint is signed by the log key, and the newest one by
    --quorum of the --witness keys;
  - each checkpoint's root is the root of the leaves at its size: a leaf
    edited, inserted, deleted or moved (with the stored hashes rewritten to
    match) fails the first checkpoint after it; two signed checkpoints of
    one size with different roots are a fork; a checkpoint beyond the last
    leaf means leaves were deleted from the end; consecutive checkpoints
    are thereby consistent (--verbose lists each pair);
  - every decision's leaf is the one the store derives from the decision,
    at the index the store holds for it, and every decision made since the
    log began has a leaf. A disagreement is settled by the next checkpoint:
    if it proves the leaf, the decision changed after it was logged.

The default source is the decision store of the configuration, opened for
reading only. For PostgreSQL run the audit under a role that can only read
('certless audit grants --role NAME' prints its SQL): the audit never
writes, and that role cannot. With --url it reads a running broker's C2SP
tlog-tiles instead (<url>/log/checkpoint, tiles and entry bundles) with a
tile client that is not Certless's (filippo.io/torchwood) and checks the
served checkpoint and every entry.

--known adds checkpoints kept from before (from a witness, or an earlier
audit): the log must still contain their trees, so a log cut back or
rewritten since is caught even with every stored checkpoint re-signed.

Prints one line on success; a tampered log exits 1 naming the first bad
leaf (its index), checkpoint (its size) or decision (its request digest).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			pol, err := policy(cmd, cfg)
			if err != nil {
				return err
			}
			var extra [][]byte
			for _, f := range known {
				b, err := readBounded(f, translog.MaxCheckpointSize)
				if err != nil {
					return fmt.Errorf("--known: %w", err)
				}
				extra = append(extra, b)
			}
			a := &translog.Auditor{Policy: pol, EveryQuorum: everyQuorum}
			if verbose {
				a.Consistent = func(old, new tlog.Tree) {
					fmt.Fprintf(g.stdout, "consistent: checkpoint of size %d is a prefix of the checkpoint of size %d\n", old.N, new.N)
				}
			}
			var res auditResult
			if url != "" {
				res, err = auditTiles(ctx, g, a, strings.TrimSuffix(url, "/"), extra)
			} else {
				s, oerr := openAuditStore(ctx, cfg.Store.DSN)
				if oerr != nil {
					return oerr
				}
				defer s.Close()
				res, err = auditDecisionStore(ctx, g, a, s, extra)
			}
			if err != nil {
				return err
			}
			return res.print(g, url != "")
		},
	}
	policyFlags(verify, true)
	verify.Flags().StringVar(&url, "url", "", "audit a running broker's served log at this base URL instead of the decision store")
	verify.Flags().StringArrayVar(&known, "known", nil, "a signed checkpoint file kept from before, which the log must still contain; repeat")
	verify.Flags().BoolVar(&everyQuorum, "every-quorum", false, "require --quorum cosignatures of every checkpoint, not only the newest")
	verify.Flags().BoolVarP(&verbose, "verbose", "v", false, "list each consistent pair of consecutive checkpoints")

	var receipt string
	prove := &cobra.Command{
		Use:   "prove --receipt ID [--quorum K]",
		Short: "Print the C2SP tlog-proof of a decision's leaf against a stored checkpoint covering it",
		Long: `Prints the C2SP tlog-proof (c2sp.org/tlog-proof@v1, the leaf as its extra
data) of the leaf of one decision, read from the decision store: ID is the
request digest (sha256:<hex>, a receipt's request_digest). The checkpoint
is the smallest stored one covering the leaf that --quorum witnesses
cosigned, else the newest covering it. The proof is checked against that
checkpoint before it is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if receipt == "" {
				return usagef("--receipt is required")
			}
			if !strings.HasPrefix(receipt, "sha256:") {
				return usagef("--receipt %q is not a request digest (sha256:<hex>)", receipt)
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("quorum") {
				quorum = cfg.Transparency.Quorum
			}
			s, err := openAuditStore(cmd.Context(), cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer s.Close()
			p, err := proveLeaf(cmd.Context(), s, receipt, quorum)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(p.Format())
			return err
		},
	}
	prove.Flags().StringVar(&receipt, "receipt", "", "the decision's request digest, sha256:<hex>")
	prove.Flags().IntVar(&quorum, "quorum", 0, "prefer a checkpoint with at least this many cosignatures (default: transparency.quorum)")

	consistency := &cobra.Command{
		Use:   "consistency OLD NEW",
		Short: "Print the consistency proof between two checkpoints (files or stored sizes), checked; non-zero exit if inconsistent",
		Long: `Proves that the log's tree at OLD is a prefix of its tree at NEW. Each of
OLD and NEW is a signed checkpoint file (verified with the log key) or a
size, naming the stored checkpoint of that size. The proof's hashes come
from the decision store; they are printed in base64, one per line, after
tlog.CheckTree verified them against both roots. Checkpoints that are not
consistent (a fork, or a log rewritten between them) exit 1.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			pol, err := policy(cmd, cfg)
			if err != nil {
				return err
			}
			s, err := openAuditStore(ctx, cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer s.Close()
			old, err := auditCheckpointArg(ctx, s, pol, args[0])
			if err != nil {
				return err
			}
			new, err := auditCheckpointArg(ctx, s, pol, args[1])
			if err != nil {
				return err
			}
			if old.N > new.N {
				return usagef("OLD is of size %d, larger than NEW's %d", old.N, new.N)
			}
			proof, err := tlog.ProveTree(new.N, old.N, translog.HashReader(ctx, s))
			if err != nil {
				return fmt.Errorf("consistency proof %d -> %d: %w", old.N, new.N, err)
			}
			if err := tlog.CheckTree(proof, new.N, new.Hash, old.N, old.Hash); err != nil {
				return fmt.Errorf("the checkpoints of sizes %d and %d are not consistent: the log forked or was rewritten between them (%w)", old.N, new.N, err)
			}
			for _, h := range proof {
				fmt.Fprintln(g.stdout, base64.StdEncoding.EncodeToString(h[:]))
			}
			fmt.Fprintf(g.stderr, "consistent: the tree of size %d is a prefix of the tree of size %d (%d proof hashes)\n", old.N, new.N, len(proof))
			return nil
		},
	}
	policyFlags(consistency, false)

	var role string
	grants := &cobra.Command{
		Use:   "grants --role NAME",
		Short: "Print the SQL giving an auditor's PostgreSQL role SELECT on the decisions and the log, nothing more",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usagef("--role is required")
			}
			fmt.Fprint(g.stdout, store.PostgresAuditorRoleSQL(role))
			return nil
		},
	}
	grants.Flags().StringVar(&role, "role", "certless_auditor", "the auditor's login role")

	cmd.AddCommand(verify, prove, consistency, grants)
	return cmd
}

// openAuditStore opens the decision store for reading only: a SQLite file
// read-only (mode=ro), PostgreSQL as given (run it as the role
// PostgresAuditorRoleSQL grants). Open never migrates a current schema.
func openAuditStore(ctx context.Context, dsn string) (store.Store, error) {
	s, err := store.Open(ctx, readOnlyDSN(dsn), store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open the decision store read-only: %w", err)
	}
	return s, nil
}

// readOnlyDSN is dsn opened read-only, for a SQLite file.
func readOnlyDSN(dsn string) string {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"),
		dsn == "", strings.Contains(dsn, ":memory:"), strings.Contains(dsn, "mode="):
		return dsn
	case strings.HasPrefix(dsn, "file:"):
		if strings.Contains(dsn, "?") {
			return dsn + "&mode=ro"
		}
		return dsn + "?mode=ro"
	}
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(dsn)
	return "file:" + esc + "?mode=ro"
}

// auditPolicy builds what the audit trusts from the flags and the
// configuration.
func auditPolicy(cmd *cobra.Command, cfg *config.Config, logKey, origin string, witnessFiles []string, quorum int) (translog.Policy, error) {
	file := logKey
	if file == "" {
		file = logVerifierFile(cfg)
	}
	v, err := readVerifier(file, func(s string) (note.Verifier, error) { return note.NewVerifier(s) })
	if err != nil {
		return translog.Policy{}, fmt.Errorf("log key: %w", err)
	}
	pol := translog.Policy{Origin: origin, Log: v}
	if pol.Origin == "" {
		pol.Origin = cfg.LogOrigin()
		if logKey != "" {
			pol.Origin = v.Name()
		}
	}
	if len(witnessFiles) > 0 {
		for _, f := range witnessFiles {
			w, err := readVerifier(f, func(s string) (note.Verifier, error) { return witness.NewCosignatureVerifier(s) })
			if err != nil {
				return translog.Policy{}, fmt.Errorf("witness key: %w", err)
			}
			pol.Witnesses = append(pol.Witnesses, w)
		}
		pol.Quorum = len(pol.Witnesses)
	} else {
		if pol.Witnesses, err = configWitnesses(cfg); err != nil {
			return translog.Policy{}, err
		}
		pol.Quorum = cfg.Transparency.Quorum
	}
	if f := cmd.Flags().Lookup("quorum"); f != nil && f.Changed {
		pol.Quorum = quorum
	}
	if pol.Quorum < 0 || pol.Quorum > len(pol.Witnesses) {
		return translog.Policy{}, usagef("--quorum %d with %d witnesses", pol.Quorum, len(pol.Witnesses))
	}
	return pol, nil
}

// configWitnesses are the cosignature verifiers of the configured
// witnesses.
func configWitnesses(cfg *config.Config) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, cw := range cfg.Transparency.Witnesses {
		w, err := witness.NewCosignatureVerifier(cw.VKey)
		if err != nil {
			return nil, fmt.Errorf("transparency witness %s: %w", cw.URL, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// auditResult is what verify found.
type auditResult struct {
	report    translog.Report
	decisions int // decisions in the store
	preLog    int // decisions made before the log began, without a leaf
	unlogged  []string
	more      int // decisions without a leaf beyond those named
}

func (r auditResult) print(g *globals, tiles bool) error {
	var problems []string
	if p := r.report.Problem; p != nil {
		problems = append(problems, p.Error())
	}
	problems = append(problems, r.unlogged...)
	if r.more > 0 {
		problems = append(problems, fmt.Sprintf("and %d more decisions without a leaf", r.more))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(g.stdout, "FAIL %s\n", p)
		}
		what := "the log"
		if !tiles {
			what = "the log and its decisions"
		}
		if len(problems) > 1 {
			return fmt.Errorf("%s failed the audit: %s (and %d more problems)", what, problems[0], len(problems)-1)
		}
		return fmt.Errorf("%s failed the audit: %s", what, problems[0])
	}
	rep := r.report
	var b strings.Builder
	fmt.Fprintf(&b, "log verified: %s, %s", plural(rep.Leaves, "leaf", "leaves"), plural(int64(rep.Checkpoints), "checkpoint", "checkpoints"))
	if rep.Checkpoints > 0 {
		fmt.Fprintf(&b, ", tree head %d %s", rep.Head.N, rep.Head.Hash)
		if len(rep.Cosigned) > 0 {
			fmt.Fprintf(&b, " cosigned by %s", strings.Join(rep.Cosigned, ", "))
		}
	}
	if rep.Unintegrated > 0 {
		fmt.Fprintf(&b, ", %s not yet checkpointed", plural(rep.Unintegrated, "leaf", "leaves"))
	}
	if !tiles {
		fmt.Fprintf(&b, "; %s", plural(int64(r.decisions), "decision", "decisions"))
		if r.preLog > 0 {
			fmt.Fprintf(&b, " (%d made before the log began)", r.preLog)
		}
	}
	fmt.Fprintln(g.stdout, b.String())
	return nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// auditBar is the progress bar on stderr.
func auditBar(g *globals, a *translog.Auditor, total int64) func() {
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(progressTo(g.stderr)),
		progressbar.OptionSetDescription("auditing the log"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("leaves"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(progressTo(g.stderr)) }),
	)
	a.Progress = func(done, _ int64) { bar.Set64(done) }
	return func() { bar.Exit() }
}

// auditDecisionStore audits the decision store's log and its decisions, reading
// only.
func auditDecisionStore(ctx context.Context, g *globals, a *translog.Auditor, s store.Store, known [][]byte) (auditResult, error) {
	var res auditResult
	// Checkpoints first, then the size: every checkpoint read is of a
	// size the leaves read cover, with brokers appending meanwhile.
	var cps [][]byte
	if err := s.Checkpoints(ctx, func(b []byte) error { cps = append(cps, b); return nil }); err != nil {
		return res, err
	}
	cps = append(cps, known...)
	size, err := s.Sequenced(ctx)
	if err != nil {
		return res, err
	}
	var matched atomic.Int64
	a.Compare = func(ctx context.Context, start int64, leaves [][]byte, parsed []translog.Leaf) (*translog.Disagreement, error) {
		return compareDecisions(ctx, s, start, leaves, parsed, &matched)
	}
	done := auditBar(g, a, size)
	rep, err := a.Audit(ctx, translog.AuditLog{
		Size: size, ReadLeaves: s.ReadLeaves, ReadHashes: s.ReadHashes,
		Checkpoints: func(_ context.Context, fn func([]byte) error) error {
			for _, c := range cps {
				if err := fn(c); err != nil {
					return err
				}
			}
			return nil
		},
	})
	done()
	if err != nil {
		return res, err
	}
	res.report = rep
	if err := unloggedDecisions(ctx, s, matched.Load(), &res); err != nil {
		return res, err
	}
	return res, nil
}

// compareDecisions checks each decision leaf against the decision the
// store holds for its request, auditWorkers at a time, and returns the
// first that disagrees.
func compareDecisions(ctx context.Context, s store.Store, start int64, leaves [][]byte, parsed []translog.Leaf, matched *atomic.Int64) (*translog.Disagreement, error) {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		first *translog.Disagreement
		ferr  error
		wg    sync.WaitGroup
	)
	for range auditWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= len(leaves) {
					return
				}
				mu.Lock()
				stop := ferr != nil || (first != nil && first.Index < start+int64(k))
				mu.Unlock()
				if stop {
					return
				}
				if parsed[k].Kind != translog.KindDecision {
					continue
				}
				reason, err := compareDecision(ctx, s, start+int64(k), leaves[k], parsed[k])
				mu.Lock()
				switch {
				case err != nil:
					ferr = err
				case reason != "":
					if first == nil || start+int64(k) < first.Index {
						first = &translog.Disagreement{Index: start + int64(k), Reason: reason}
					}
				default:
					matched.Add(1)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first, ferr
}

// compareDecision says how leaf i disagrees with its decision, "" when it
// does not.
func compareDecision(ctx context.Context, s store.Store, i int64, data []byte, leaf translog.Leaf) (string, error) {
	d, ok, err := s.Get(ctx, leaf.Request)
	if err != nil {
		return "", fmt.Errorf("decision %s of leaf %d: %w", leaf.Request, i, err)
	}
	if !ok {
		return fmt.Sprintf("it logs the decision of request %s, which the store does not hold (the decision was deleted)", leaf.Request), nil
	}
	if d.LeafIndex != i {
		if d.LeafIndex < 0 {
			return fmt.Sprintf("it logs the decision of request %s, which the store holds without a leaf under its digest (leaf %d's key was changed)", leaf.Request, i), nil
		}
		return fmt.Sprintf("it logs the decision of request %s, which the store logs at leaf %d", leaf.Request, d.LeafIndex), nil
	}
	want, err := store.DecisionLeaf(d)
	if err != nil {
		return fmt.Sprintf("the stored decision of request %s is not a valid decision: %v", leaf.Request, err), nil
	}
	if bytes.Equal(want, data) {
		return "", nil
	}
	return fmt.Sprintf("it disagrees with the stored decision of request %s: %s", leaf.Request, leafDiff(leaf, want)), nil
}

// leafDiff names the members in which a leaf and the leaf of the stored
// decision differ.
func leafDiff(logged translog.Leaf, stored []byte) string {
	s, err := translog.ParseLeaf(stored)
	if err != nil {
		return "the decision's leaf does not parse: " + err.Error()
	}
	fields := []struct{ name, logged, stored string }{
		{"agency", logged.Agency, s.Agency}, {"agreement", logged.Agreement, s.Agreement},
		{"agreement_id", logged.AgreementID, s.AgreementID},
		{"agreement_version", strconv.Itoa(logged.AgreementVersion), strconv.Itoa(s.AgreementVersion)},
		{"outcome", logged.Outcome, s.Outcome}, {"query", logged.Query, s.Query}, {"reason", logged.Reason, s.Reason},
		{"receipt", logged.Receipt, s.Receipt}, {"time", logged.Time, s.Time}, {"type", logged.Type, s.Type},
	}
	var out []string
	for _, f := range fields {
		if f.logged != f.stored {
			out = append(out, fmt.Sprintf("%s %q in the leaf, %q in the store", f.name, f.logged, f.stored))
		}
	}
	if len(out) == 0 {
		return "the bytes differ"
	}
	return strings.Join(out, ", ")
}

// unloggedDecisions names the decisions made since the log began that have
// no leaf. The store lists decisions without a leaf oldest first, those
// from before the log first; matched counts the decisions whose leaf was
// found, so at most count-matched lack one.
func unloggedDecisions(ctx context.Context, s store.Store, matched int64, res *auditResult) error {
	n, err := s.Count(ctx)
	if err != nil {
		return err
	}
	res.decisions = n
	without := int64(n) - matched
	if without <= 0 {
		return nil
	}
	digests, err := s.Unlogged(ctx, int(without))
	if err != nil {
		return err
	}
	began, ok, err := logBegan(ctx, s)
	if err != nil {
		return err
	}
	if !ok {
		res.preLog = len(digests) // an empty log: every decision predates it
		return nil
	}
	// Newest first, until the decisions predate the log.
	var after []string
	for k := len(digests) - 1; k >= 0; k-- {
		d, found, err := s.Get(ctx, digests[k])
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if d.DecidedAt.Before(began) {
			res.preLog = k + 1
			break
		}
		after = append(after, fmt.Sprintf("decision %s (decided %s) has no leaf, though the log began at %s: its leaf was deleted or its key changed",
			d.Digest, translog.FormatTime(d.DecidedAt), translog.FormatTime(began)))
	}
	sort.Strings(after)
	if len(after) > maxAuditNamed {
		res.more = len(after) - maxAuditNamed
		after = after[:maxAuditNamed]
	}
	res.unlogged = after
	return nil
}

// logBegan is the time of the log's first leaf.
func logBegan(ctx context.Context, s store.Store) (time.Time, bool, error) {
	ls, err := s.ReadLeaves(ctx, 0, 1)
	if err != nil {
		return time.Time{}, false, err
	}
	if len(ls) == 0 {
		// Leaf 0 is gone (the audit names it): the first that remains.
		return time.Time{}, false, nil
	}
	l, err := translog.ParseLeaf(ls[0])
	if err != nil {
		return time.Time{}, false, nil
	}
	t, err := l.TimeOf()
	return t, err == nil, nil
}

// auditTiles audits a broker's served log through C2SP tlog-tiles.
func auditTiles(ctx context.Context, g *globals, a *translog.Auditor, url string, known [][]byte) (auditResult, error) {
	var res auditResult
	fetcher, err := torchwood.NewTileFetcher(url+"/log", torchwood.WithUserAgent("certless-audit"))
	if err != nil {
		return res, err
	}
	signed, err := fetcher.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		return res, fmt.Errorf("%s/log/checkpoint: %w", url, err)
	}
	c, _, err := a.Policy.VerifyCheckpoint(signed)
	if err != nil && c.Note == nil {
		res.report.Problem = &translog.Problem{Leaf: -1, Checkpoint: -1, Reason: fmt.Sprintf("the served checkpoint does not verify: %v", err)}
		return res, nil
	}
	client, err := torchwood.NewClient(fetcher)
	if err != nil {
		return res, err
	}
	entries := &tileEntries{client: client, tree: c.Tree}
	defer entries.stop()
	done := auditBar(g, a, c.N)
	rep, err := a.Audit(ctx, translog.AuditLog{
		Size: c.N, ReadLeaves: entries.read,
		Checkpoints: func(_ context.Context, fn func([]byte) error) error {
			for _, b := range append([][]byte{signed}, known...) {
				if err := fn(b); err != nil {
					return err
				}
			}
			return nil
		},
	})
	done()
	if err != nil {
		return res, fmt.Errorf("%s: %w", url, err)
	}
	res.report = rep
	return res, nil
}

// tileEntries reads a served log's entries in order through torchwood's
// client, which authenticates each against the tree.
type tileEntries struct {
	client *torchwood.Client
	tree   tlog.Tree
	next   int64
	pull   func() (int64, []byte, bool)
	stopFn func()
}

func (e *tileEntries) stop() {
	if e.stopFn != nil {
		e.stopFn()
		e.pull, e.stopFn = nil, nil
	}
}

func (e *tileEntries) read(ctx context.Context, start int64, n int) ([][]byte, error) {
	if start != e.next {
		return nil, fmt.Errorf("entries read out of order: %d after %d", start, e.next)
	}
	var out [][]byte
	fresh := false
	for len(out) < n && e.next < e.tree.N {
		if e.pull == nil {
			// torchwood stops before a trailing partial tile unless the
			// call starts in it: resume from where the last call stopped.
			var seq iter.Seq2[int64, []byte] = e.client.Entries(ctx, e.tree, e.next)
			e.pull, e.stopFn = iter.Pull2(seq)
			fresh = true
		}
		i, entry, ok := e.pull()
		if !ok {
			e.stop()
			if err := e.client.Err(); err != nil {
				return nil, fmt.Errorf("entry %d: the served tiles do not authenticate it: %w", e.next, err)
			}
			if fresh {
				break // a fresh call that yields nothing: the entries stop here
			}
			continue
		}
		fresh = false
		if i != e.next {
			return nil, fmt.Errorf("entry %d served in place of %d", i, e.next)
		}
		out = append(out, entry)
		e.next++
	}
	return out, nil
}

// auditCheckpointArg is a checkpoint file verified with the log key, or
// the stored checkpoint of a size.
func auditCheckpointArg(ctx context.Context, s store.Store, pol translog.Policy, arg string) (tlog.Tree, error) {
	if n, err := strconv.ParseInt(arg, 10, 64); err == nil {
		if n < 0 {
			return tlog.Tree{}, usagef("size %d is negative", n)
		}
		var found []byte
		err := s.Checkpoints(ctx, func(b []byte) error {
			if c, err := translog.ParseCheckpointBody(b); err == nil && c.N == n {
				found = b
			}
			return nil
		})
		if err != nil {
			return tlog.Tree{}, err
		}
		if found == nil {
			return tlog.Tree{}, fmt.Errorf("no stored checkpoint of size %d", n)
		}
		return openAuditCheckpoint(pol, found, fmt.Sprintf("stored checkpoint of size %d", n))
	}
	b, err := readBounded(arg, translog.MaxCheckpointSize)
	if err != nil {
		return tlog.Tree{}, err
	}
	return openAuditCheckpoint(pol, b, arg)
}

func openAuditCheckpoint(pol translog.Policy, b []byte, what string) (tlog.Tree, error) {
	c, err := translog.OpenCheckpoint(b, pol.Origin, pol.Log)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("%s: %w", what, err)
	}
	return c.Tree, nil
}

// proveLeaf is the checked C2SP tlog-proof of the leaf of the decision of
// digest.
func proveLeaf(ctx context.Context, s store.Store, digest string, quorum int) (translog.Proof, error) {
	idx, leaf, ok, err := s.Leaf(ctx, digest)
	if err != nil {
		return translog.Proof{}, err
	}
	if !ok {
		if _, found, err := s.Get(ctx, digest); err == nil && found {
			return translog.Proof{}, fmt.Errorf("decision %s has no leaf (it was made before the transparency log existed, or its leaf is gone)", digest)
		}
		return translog.Proof{}, fmt.Errorf("no leaf for request %s", digest)
	}
	cp, err := s.CheckpointCovering(ctx, idx, quorum)
	if err != nil {
		return translog.Proof{}, err
	}
	if cp == nil {
		return translog.Proof{}, fmt.Errorf("leaf %d of %s is not under a checkpoint yet; the broker checkpoints every second, try again", idx, digest)
	}
	c, err := translog.ParseCheckpointBody(cp)
	if err != nil {
		return translog.Proof{}, err
	}
	rp, err := tlog.ProveRecord(c.N, idx, translog.HashReader(ctx, s))
	if err != nil {
		return translog.Proof{}, fmt.Errorf("inclusion proof of leaf %d in %d: %w", idx, c.N, err)
	}
	if err := tlog.CheckRecord(rp, c.N, c.Hash, idx, tlog.RecordHash(leaf)); err != nil {
		return translog.Proof{}, fmt.Errorf("the stored hashes do not prove leaf %d in the checkpoint of size %d (run certless audit verify): %w", idx, c.N, err)
	}
	return translog.Proof{Leaf: leaf, Index: idx, Hashes: rp, Checkpoint: cp}, nil
}
