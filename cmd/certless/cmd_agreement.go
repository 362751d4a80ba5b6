package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/policies/workdays"
)

// The consultation workflow (省级会商) over the files of the policies
// folder. Documents are immutable: propose and activate create new files
// (never overwrite one), sign only writes <file>.jws.json, and the lifecycle
// commands only append to <file>.status.jws.
//
// The flow: one party proposes (status proposed, a review deadline in
// working days); both sign the proposal to say they agree on its terms;
// `activate` writes the next version with status active and the same terms;
// both sign that; a running broker enforces it within 2s.

// agreementCtx is what every agreement subcommand shares.
type agreementCtx struct {
	g       *globals
	dir     string // --dir: the policies folder
	keysDir string // --keys: the keys folder
	nowFlag string // --now (hidden, for tests): the clock
}

func (c *agreementCtx) policiesDir() (string, error) {
	if c.dir != "" {
		return c.dir, nil
	}
	cfg, err := c.g.loadConfig(os.Getenv)
	if err != nil {
		return "", err
	}
	return cfg.PoliciesDir, nil
}

func (c *agreementCtx) keysFolder() (string, error) {
	if c.keysDir != "" {
		return c.keysDir, nil
	}
	cfg, err := c.g.loadConfig(os.Getenv)
	if err != nil {
		return "", err
	}
	return cfg.KeysDir, nil
}

// load reads the policies folder as the broker does: only the
// configuration's data owners may be providers.
func (c *agreementCtx) load(dir string, reg *keys.Registry) (*policies.Set, []policies.Problem) {
	owners := config.Default("").DataOwners
	if cfg, err := c.g.loadConfig(os.Getenv); err == nil {
		owners = cfg.DataOwners
	}
	return policies.LoadFor(dir, reg, owners)
}

func (c *agreementCtx) registry() (*keys.Registry, error) {
	d, err := c.keysFolder()
	if err != nil {
		return nil, err
	}
	return keys.LoadDir(d)
}

func (c *agreementCtx) now() (time.Time, error) {
	if c.nowFlag == "" {
		return time.Now().Truncate(time.Second), nil
	}
	t, err := parseInstant(c.nowFlag)
	if err != nil {
		return t, usagef("--now: %v", err)
	}
	return t, nil
}

func newAgreementCmd(g *globals) *cobra.Command {
	c := &agreementCtx{g: g}
	cmd := &cobra.Command{
		Use:   "agreement",
		Short: "Propose, co-sign, verify, list, suspend and terminate data-sharing agreements",
		Long: `The consultation workflow (省级会商) over the agreement documents of the
policies folder (policies_dir of the configuration, or --dir), with the
parties' keys from the keys folder (keys_dir, or --keys).

  propose    write a proposal (status proposed) with a review deadline in
             working days (weekends and China's public holidays skipped)
  sign       add a party's signature over the file's exact bytes
  activate   write the next version of a proposal with status active and
             the same terms, for both parties to sign
  verify     exit 0 only when both parties' signatures verify
  show, diff, list
  suspend, resume, terminate
             a party's signed lifecycle statement, appended beside the file

A document is never rewritten: any change is a new version in a new file,
signed again by both parties. Times are RFC 3339 (2026-12-01T09:00:00+08:00)
or a date (2026-12-01, midnight Beijing time).`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.dir, "dir", "", "policies folder (default: policies_dir of the configuration)")
	pf.StringVar(&c.keysDir, "keys", "", "keys folder (default: keys_dir of the configuration)")
	pf.StringVar(&c.nowFlag, "now", "", "the current time (for tests)")
	_ = pf.MarkHidden("now")

	cmd.AddCommand(
		c.proposeCmd(), c.signCmd(), c.activateCmd(), c.verifyCmd(),
		c.showCmd(), c.diffCmd(), c.listCmd(),
		c.statementCmd("suspend", policies.StatusSuspended, "Suspend an agreement at once, alone (either party)"),
		c.statementCmd("resume", policies.StatusActive, "Lift your own suspension (only the party that suspended)"),
		c.statementCmd("terminate", policies.StatusTerminated, "Terminate an agreement, alone and for good (either party)"),
	)
	return cmd
}

// ---- propose

type proposeFlags struct {
	id, requester, provider, title, legalBasis, out string
	queries, purposes, fields, scope, holidays      []string
	caseRef                                         bool
	perMinute, perDay, perMonth                     int64
	from, until, hours                              string
	weekdays                                        []int
	workingDays                                     int
}

func (c *agreementCtx) proposeCmd() *cobra.Command {
	var f proposeFlags
	cmd := &cobra.Command{
		Use:   "propose --id ID --requester A --provider P --query Q[,Q] --purpose P[,P] [flags]",
		Short: "Write a proposal with a review deadline of --working-days working days",
		Long: `Write a proposal: an agreement document with status proposed, version 1
or the next after the highest version of that id in the policies folder,
and a review deadline at the end of the --working-days-th working day
(default 5) after now, Beijing time, skipping weekends and China's public
holidays (the shipped calendars, plus --holidays files of the workdays
form). A year without a calendar counts only weekends, with a warning.

Every query gets the purposes, case-reference rule and scope given; of
--fields, each query gets those it documents (default: all its documented
fields). The file is <dir>/<id with / and : as ->.v<version>.yaml unless
--out; an existing file is never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return c.propose(&f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "agreement id, e.g. court-changchun/criminal-records")
	fl.StringVar(&f.requester, "requester", "", "the requesting agency")
	fl.StringVar(&f.provider, "provider", "", "the police data owner")
	fl.StringSliceVar(&f.queries, "query", nil, "query types allowed: "+strings.Join(queryNames(), ", "))
	fl.StringSliceVar(&f.purposes, "purpose", nil, "lawful purpose codes")
	fl.StringSliceVar(&f.fields, "fields", nil, "answer fields that may be returned (default: every documented field of each query)")
	fl.BoolVar(&f.caseRef, "case-ref-required", false, "a request must carry a case reference")
	fl.StringSliceVar(&f.scope, "scope", nil, "GB/T 2260 region codes whose residents it covers (default: the residents of the requester's own region in the docking directory; 220000 for the whole province)")
	fl.StringVar(&f.legalBasis, "legal-basis", "", "the law that allows it, for readers")
	fl.Int64Var(&f.perMinute, "per-minute", 0, "quota per minute (0: no limit)")
	fl.Int64Var(&f.perDay, "per-day", 0, "quota per day (0: no limit)")
	fl.Int64Var(&f.perMonth, "per-month", 0, "quota per month (0: no limit)")
	fl.StringVar(&f.hours, "hours", "", "service hours HH:MM-HH:MM, Beijing time (default: always)")
	fl.IntSliceVar(&f.weekdays, "weekdays", nil, "service days with --hours, 1 = Monday .. 7 = Sunday (default: every day)")
	fl.StringVar(&f.from, "from", "", "in force from (default: now)")
	fl.StringVar(&f.until, "until", "", "in force until, exclusive (default: one year after --from)")
	fl.StringVar(&f.title, "title", "", "title (default: made of the parties and queries)")
	fl.StringVar(&f.out, "out", "", "file to write (default: in the policies folder)")
	fl.IntVar(&f.workingDays, "working-days", 5, "review period in working days")
	fl.StringSliceVar(&f.holidays, "holidays", nil, "extra holiday calendar file(s), workdays JSON form (a year not shipped)")
	return cmd
}

func (c *agreementCtx) propose(f *proposeFlags) error {
	for name, v := range map[string]string{"--id": f.id, "--requester": f.requester, "--provider": f.provider} {
		if v == "" {
			return usagef("%s is required", name)
		}
	}
	if len(f.queries) == 0 || len(f.purposes) == 0 {
		return usagef("--query and --purpose are required")
	}
	if f.workingDays < 1 {
		return usagef("--working-days %d: want at least 1", f.workingDays)
	}
	now, err := c.now()
	if err != nil {
		return err
	}
	cal := workdays.Default()
	for _, h := range f.holidays {
		b, err := os.ReadFile(h)
		if err != nil {
			return err
		}
		if cal, err = cal.With(b); err != nil {
			return fmt.Errorf("--holidays %s: %w", h, err)
		}
	}
	a := &policies.Agreement{
		ID:     f.id,
		Title:  f.title,
		Status: policies.StatusProposed,
		Parties: policies.Parties{
			Requester: f.requester, Provider: f.provider,
		},
		Quotas: policies.Quotas{PerMinute: f.perMinute, PerDay: f.perDay, PerMonth: f.perMonth},
	}
	if a.Title == "" {
		a.Title = fmt.Sprintf("%s ← %s: %s", f.requester, f.provider, strings.Join(f.queries, ", "))
	}
	used := map[string]bool{}
	for _, q := range f.queries {
		qt := adapters.QueryType(q)
		if !qt.Valid() {
			return usagef("--query %q: want one of %s", q, strings.Join(queryNames(), ", "))
		}
		t := policies.Terms{Query: q, Purposes: f.purposes, LegalBasis: f.legalBasis, CaseRefRequired: f.caseRef, Scope: f.scope}
		t.Fields = qt.Fields()
		if len(f.fields) > 0 {
			t.Fields = nil
			for _, fd := range f.fields {
				if slices.Contains(qt.Fields(), fd) {
					t.Fields = append(t.Fields, fd)
					used[fd] = true
				}
			}
			if len(t.Fields) == 0 {
				return usagef("--fields: none is a field of %s (documented: %s)", q, strings.Join(qt.Fields(), ", "))
			}
		}
		a.Queries = append(a.Queries, t)
	}
	for _, fd := range f.fields {
		if !used[fd] {
			return usagef("--fields: %q is a field of none of the queries", fd)
		}
	}
	if f.hours != "" {
		from, to, ok := strings.Cut(f.hours, "-")
		if !ok {
			return usagef("--hours %q: want HH:MM-HH:MM", f.hours)
		}
		a.ServiceHours = &policies.ServiceHours{From: from, To: to, Weekdays: f.weekdays}
	} else if len(f.weekdays) > 0 {
		return usagef("--weekdays needs --hours")
	}
	a.Validity.From = now.In(policies.Beijing)
	if f.from != "" {
		if a.Validity.From, err = parseInstant(f.from); err != nil {
			return usagef("--from: %v", err)
		}
	}
	a.Validity.Until = a.Validity.From.AddDate(1, 0, 0)
	if f.until != "" {
		if a.Validity.Until, err = parseInstant(f.until); err != nil {
			return usagef("--until: %v", err)
		}
	}
	deadline := cal.Deadline(now, f.workingDays)
	a.ReviewDeadline = &deadline

	dir, err := c.policiesDir()
	if err != nil {
		return err
	}
	if a.Version, err = nextVersion(dir, a.ID); err != nil {
		return err
	}
	path, err := c.writeNew(dir, f.out, a)
	if err != nil {
		return err
	}
	for _, t := range []time.Time{now, deadline.Add(-time.Nanosecond)} {
		switch {
		case cal.Provisional(t):
			fmt.Fprintf(c.g.stderr, "warning: the State Council's holiday notice for %d is not in the calendar (shipped: %s): weekends and that year's statutory holidays were skipped, not its bridge or make-up working days; add the notice with --holidays FILE\n",
				t.In(workdays.Beijing).Year(), joinInts(cal.Years()))
		case !cal.Known(t):
			fmt.Fprintf(c.g.stderr, "warning: no holiday calendar for %d (shipped: %s): only weekends and the fixed-date holidays were skipped; add one with --holidays FILE\n",
				t.In(workdays.Beijing).Year(), joinInts(cal.Years()))
		default:
			continue
		}
		break
	}
	fmt.Fprintf(c.g.stdout, "proposed %s version %d: %s\n  review deadline: %s (%d working days)\n  next: certless agreement sign %s --as %s (and --as %s)\n",
		a.ID, a.Version, path, deadline.In(policies.Beijing).Format(time.RFC3339), f.workingDays, path, a.Parties.Requester, a.Parties.Provider)
	return nil
}

// writeNew renders a, checks that it parses, and writes it to out (or its
// default name in dir), refusing to overwrite any file.
func (c *agreementCtx) writeNew(dir, out string, a *policies.Agreement) (string, error) {
	doc, err := policies.Format(a)
	if err != nil {
		return "", err
	}
	path := out
	if path == "" {
		name := strings.NewReplacer("/", "-", ":", "-").Replace(a.ID)
		path = filepath.Join(dir, fmt.Sprintf("%s.v%d.yaml", name, a.Version))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("agreement documents are never overwritten: %w", err)
	}
	if _, err := fh.Write(doc); err != nil {
		fh.Close()
		return "", err
	}
	return path, fh.Close()
}

// nextVersion is one more than the highest version of id among the
// documents of dir that parse (verified or not: a refused file still holds
// its version number).
func nextVersion(dir, id string) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	v := 0
	for _, e := range ents {
		n := e.Name()
		ext := filepath.Ext(n)
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, policies.SignaturesSuffix) || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		if a, err := policies.Parse(b); err == nil && a.ID == id && a.Version > v {
			v = a.Version
		}
	}
	return v + 1, nil
}

// ---- sign and activate

func (c *agreementCtx) signCmd() *cobra.Command {
	var as string
	cmd := &cobra.Command{
		Use:   "sign FILE --as PARTY",
		Short: "Sign the file's exact bytes with PARTY's current signing key, into FILE.jws.json",
		Long: `Sign the file's exact bytes with the current signing key of PARTY (the
requester or the provider) from the keys folder, adding or replacing
PARTY's signature in FILE.jws.json. The signatures already there must
verify over the file as it is now: signing a file changed after another
party signed it is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" {
				return usagef("--as PARTY is required")
			}
			return c.sign(args[0], as)
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the signing party")
	return cmd
}

// readPartyAgreement reads the agreement at path, which party must be a
// party of.
func readPartyAgreement(path, party string) ([]byte, *policies.Agreement, error) {
	doc, a, err := readAgreement(path)
	if err != nil {
		return nil, nil, err
	}
	if !a.Party(party) {
		return nil, nil, fmt.Errorf("%s is not a party of %s (requester %s, provider %s)", party, a.ID, a.Parties.Requester, a.Parties.Provider)
	}
	return doc, a, nil
}

func (c *agreementCtx) sign(path, party string) error {
	doc, a, err := readPartyAgreement(path, party)
	if err != nil {
		return err
	}
	now, err := c.now()
	if err != nil {
		return err
	}
	kd, err := c.keysFolder()
	if err != nil {
		return err
	}
	reg, err := keys.LoadDir(kd)
	if err != nil {
		return err
	}
	sigPath := path + policies.SignaturesSuffix
	sigs, err := readOptional(sigPath)
	if err != nil {
		return err
	}
	if _, err := policies.VerifySigners(doc, sigs, reg, a, false); err != nil {
		return fmt.Errorf("the signatures already in %s do not verify over %s as it is now (changed after signing?): %w", sigPath, path, err)
	}
	key, err := keys.SigningKey(kd, party, now)
	if err != nil {
		return err
	}
	out, err := policies.Sign(doc, sigs, key, now)
	if err != nil {
		return err
	}
	if err := writeAtomic(sigPath, out); err != nil {
		return err
	}
	signers, err := policies.VerifySigners(doc, out, reg, a, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.g.stdout, "signed %s v%d as %s with %s\n  signatures: %s\n", a.ID, a.Version, party, key.KID(), sigPath)
	if missing := missingParties(a, signers); len(missing) > 0 {
		fmt.Fprintf(c.g.stdout, "  waiting for: %s\n", strings.Join(missing, ", "))
	} else {
		fmt.Fprintf(c.g.stdout, "  both parties have signed (%s)\n", policies.Digest(doc))
		if a.Status == policies.StatusProposed {
			fmt.Fprintf(c.g.stdout, "  next: certless agreement activate %s\n", path)
		}
		c.pickUp()
	}
	return nil
}

func (c *agreementCtx) activateCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "activate FILE [--out FILE]",
		Short: "Write the next version of a proposal with status active and the same terms",
		Long: `Write the next version of the proposal FILE as a new file: the same terms,
version one more than the highest of its id in the policies folder, status
active, no review deadline. Both parties then sign the new file; it is in
force once both have. The proposal itself is left as it is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, a, err := readAgreement(args[0])
			if err != nil {
				return err
			}
			if a.Status != policies.StatusProposed {
				return fmt.Errorf("%s is %s, not a proposal", args[0], a.Status)
			}
			dir, err := c.policiesDir()
			if err != nil {
				return err
			}
			next := *a
			if next.Version, err = nextVersion(dir, a.ID); err != nil {
				return err
			}
			if next.Version <= a.Version {
				next.Version = a.Version + 1
			}
			next.Status, next.ReviewDeadline = policies.StatusActive, nil
			path, err := c.writeNew(dir, out, &next)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.g.stdout, "wrote %s version %d (active): %s\n  next: certless agreement sign %s --as %s (and --as %s)\n",
				next.ID, next.Version, path, path, a.Parties.Requester, a.Parties.Provider)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default: in the policies folder)")
	return cmd
}

// ---- verify and show

// inspection is everything about one agreement file, verified.
type inspection struct {
	path     string
	doc      []byte
	a        *policies.Agreement
	sigs     []sigCheck // each signature alone
	signers  []policies.Signer
	sigErr   error // of Verify with both parties required
	stmts    []policies.Statement
	stmtErr  error
	hasStmts bool
}

type sigCheck struct {
	kid    string
	signer *policies.Signer
	err    error
}

func inspect(path string, reg *keys.Registry) (*inspection, error) {
	doc, a, err := readAgreement(path)
	if err != nil {
		return nil, err
	}
	in := &inspection{path: path, doc: doc, a: a}
	sigs, err := readOptional(path + policies.SignaturesSuffix)
	if err != nil {
		return nil, err
	}
	in.signers, in.sigErr = policies.VerifySigners(doc, sigs, reg, a, true)
	if in.sigErr != nil {
		in.signers, _ = policies.VerifySigners(doc, sigs, reg, a, false)
	}
	var g struct {
		Signatures []json.RawMessage `json:"signatures"`
	}
	if json.Unmarshal(sigs, &g) == nil {
		for _, s := range g.Signatures {
			one, _ := json.Marshal(map[string]any{"signatures": []json.RawMessage{s}})
			sc := sigCheck{kid: kidOf(s)}
			ss, err := policies.VerifySigners(doc, one, reg, a, false)
			if err != nil {
				sc.err = err
			} else if len(ss) == 1 {
				sc.signer = &ss[0]
			}
			in.sigs = append(in.sigs, sc)
		}
	}
	st, err := readOptional(path + policies.StatusSuffix)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(st)) > 0 {
		in.hasStmts = true
		in.stmts, in.stmtErr = policies.ParseStatements(st, doc, a, reg)
	}
	return in, nil
}

// kidOf reads the kid of one signature's protected header, for naming a
// signature that does not verify.
func kidOf(sig json.RawMessage) string {
	var s struct {
		Protected string `json:"protected"`
	}
	_ = json.Unmarshal(sig, &s)
	raw, err := base64.RawURLEncoding.DecodeString(s.Protected)
	if err != nil {
		return "?"
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &h) != nil || h.Kid == "" {
		return "?"
	}
	return h.Kid
}

func (c *agreementCtx) verifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Exit 0 only when both parties' signatures verify over the file's exact bytes",
		Long: `Verify FILE.jws.json over FILE's exact bytes with the keys folder: exit 0
only when it holds exactly one valid signature of each party (and the
lifecycle statements of FILE.status.jws, if any, verify too). Otherwise
exit 1, naming each party whose signature fails and the reason
(signature_invalid, unknown_key, key_revoked, wrong_party, missing_party,
unsigned, invalid_agreement, statement_invalid).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := c.registry()
			if err != nil {
				return err
			}
			in, err := inspect(args[0], reg)
			if err != nil {
				var pe *policies.Error
				if errors.As(err, &pe) {
					return fmt.Errorf("%s: %s: %w", args[0], pe.Reason, err)
				}
				return err
			}
			w := c.g.stdout
			fmt.Fprintf(w, "%s: %s v%d %s\n", in.path, in.a.ID, in.a.Version, policies.Digest(in.doc))
			in.printSignatures(w)
			if in.stmtErr != nil {
				fmt.Fprintf(w, "  statements: %s: %v\n", reasonOf(in.stmtErr), in.stmtErr)
			}
			switch {
			case in.sigErr != nil:
				return fmt.Errorf("%s: %s: %w", in.path, reasonOf(in.sigErr), in.sigErr)
			case in.stmtErr != nil:
				return fmt.Errorf("%s%s: %s: %w", in.path, policies.StatusSuffix, reasonOf(in.stmtErr), in.stmtErr)
			}
			fmt.Fprintln(w, "verified: both parties signed these exact bytes")
			return nil
		},
	}
}

func (in *inspection) printSignatures(w io.Writer) {
	seen := map[string]bool{}
	for _, s := range in.sigs {
		party, _, _ := keys.SplitKID(s.kid)
		seen[party] = true
		role := in.role(party)
		if s.err != nil {
			fmt.Fprintf(w, "  %s%s: FAILS (%s): %s: %s\n", party, role, s.kid, reasonOf(s.err), oneSignatureWhy(s.err))
			continue
		}
		fmt.Fprintf(w, "  %s%s: ok, %s, signed at %s\n", party, role, s.kid, s.signer.SignedAt.In(policies.Beijing).Format(time.RFC3339))
	}
	for _, p := range []string{in.a.Parties.Requester, in.a.Parties.Provider} {
		if !seen[p] {
			fmt.Fprintf(w, "  %s%s: not signed (missing_party)\n", p, in.role(p))
		}
	}
}

// oneSignatureWhy is the reason detail of a signature checked alone
// (without the "signature 0" of its one-signature set).
func oneSignatureWhy(err error) string {
	var pe *policies.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := strings.TrimPrefix(pe.Detail, "signature 0: ")
	if pe.Err != nil {
		s += ": " + pe.Err.Error()
	}
	return s
}

func (in *inspection) role(party string) string {
	switch party {
	case in.a.Parties.Requester:
		return " (requester)"
	case in.a.Parties.Provider:
		return " (provider)"
	}
	return " (not a party)"
}

func reasonOf(err error) policies.Reason {
	var pe *policies.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return policies.ReasonInvalidAgreement
}

func (c *agreementCtx) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE|ID[@VERSION]",
		Short: "Print an agreement's terms, digest, signers, lifecycle statements and status now",
		Long: `Print an agreement's terms, digest, signers (party, kid, signed at), lifecycle
statements and its status now. Given an id, the highest version of it that
the policies folder holds and verifies (or the one @VERSION names).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := c.registry()
			if err != nil {
				return err
			}
			now, err := c.now()
			if err != nil {
				return err
			}
			path := args[0]
			if _, err := os.Stat(path); err != nil {
				if path, err = c.findByID(args[0], reg); err != nil {
					return err
				}
			}
			in, err := inspect(path, reg)
			if err != nil {
				return err
			}
			in.show(c.g.stdout, now)
			return nil
		},
	}
}

// findByID is the file of the highest loaded version of id (or of
// id@version) in the policies folder.
func (c *agreementCtx) findByID(arg string, reg *keys.Registry) (string, error) {
	dir, err := c.policiesDir()
	if err != nil {
		return "", err
	}
	id, ver, hasVer := strings.Cut(arg, "@")
	want := 0
	if hasVer {
		if want, err = strconv.Atoi(ver); err != nil {
			return "", usagef("%q: want FILE, ID or ID@VERSION", arg)
		}
	}
	set, problems := c.load(dir, reg)
	var best *policies.Info
	for _, i := range set.Agreements() {
		if i.Ref.ID == id && (want == 0 || i.Ref.Version == want) && (best == nil || i.Ref.Version > best.Ref.Version) {
			best = &i
		}
	}
	if best == nil {
		return "", fmt.Errorf("%s: no such file, and no verified agreement %s in %s (%d files refused: see certless agreement list)", arg, arg, dir, len(problems))
	}
	return filepath.Join(dir, best.File), nil
}

func (in *inspection) show(w io.Writer, now time.Time) {
	a := in.a
	fmt.Fprintf(w, "%s version %d: %s\n", a.ID, a.Version, a.Title)
	fmt.Fprintf(w, "  file:      %s\n  digest:    %s\n", in.path, policies.Digest(in.doc))
	status, note := in.statusNow(now)
	fmt.Fprintf(w, "  status:    %s%s (document: %s; at %s)\n", status, note, a.Status, now.In(policies.Beijing).Format(time.RFC3339))
	for _, f := range policies.Flatten(a) {
		if f.Name == "id" || f.Name == "version" || f.Name == "title" || f.Name == "status" {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", f.Name, f.Value)
	}
	fmt.Fprintln(w, "signers:")
	in.printSignatures(w)
	if in.sigErr != nil {
		fmt.Fprintf(w, "  not co-signed: %v\n", in.sigErr)
	}
	if in.hasStmts {
		fmt.Fprintln(w, "lifecycle statements:")
		if in.stmtErr != nil {
			fmt.Fprintf(w, "  REFUSED: %v\n", in.stmtErr)
		}
		for _, s := range in.stmts {
			fmt.Fprintf(w, "  %s  %-10s by %s (%s)\n", s.At.In(policies.Beijing).Format(time.RFC3339), s.Status, s.By, s.KID)
		}
	}
}

// statusNow is the status at now as the broker sees it: the document's
// status with the statements applied and expiry, plus a note.
func (in *inspection) statusNow(now time.Time) (policies.Status, string) {
	if in.stmtErr != nil {
		return in.a.Status, " (lifecycle statements refused: the broker refuses the file)"
	}
	info := policies.Info{Agreement: in.a, Statements: in.stmts, Signers: in.signers}
	st, note := statusOf(info, now)
	if in.sigErr != nil && in.a.Status != policies.StatusProposed {
		note += " (not co-signed: the broker refuses the file)"
	}
	return st, note
}

// statusOf is info's status at now, validity included, and a note.
func statusOf(info policies.Info, now time.Time) (policies.Status, string) {
	a := info.Agreement
	st, by := info.StatusAt(now)
	switch {
	case st == policies.StatusProposed:
		if a.ReviewDeadline != nil && now.After(*a.ReviewDeadline) {
			return st, " (review overdue)"
		}
		return st, ""
	case st == policies.StatusTerminated || st == policies.StatusExpired:
		return st, ""
	case !now.Before(a.Validity.Until):
		return policies.StatusExpired, ""
	case st == policies.StatusSuspended:
		return st, " by " + strings.Join(by, ", ")
	case now.Before(a.Validity.From):
		return st, " (not yet valid)"
	}
	return st, ""
}

// ---- diff

func (c *agreementCtx) diffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff A B",
		Short: "Print the differences between two agreement documents, field by field",
		Long: `Print the differences between two agreement documents, field by field in a
fixed order (parties, each query's purposes, fields, scope and case
reference rule, quotas, service hours, validity, schedules, status), one
line each: "FIELD: A-VALUE -> B-VALUE". Exit 0 whether or not they differ
(1 only when a file cannot be read or is not a valid agreement), so that
exit 1 keeps meaning failure as everywhere in certless.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			da, a, err := readAgreement(args[0])
			if err != nil {
				return err
			}
			db, b, err := readAgreement(args[1])
			if err != nil {
				return err
			}
			w := c.g.stdout
			fmt.Fprintf(w, "--- %s (%s v%d, %s)\n+++ %s (%s v%d, %s)\n", args[0], a.ID, a.Version, policies.Digest(da), args[1], b.ID, b.Version, policies.Digest(db))
			changes := policies.Diff(a, b)
			for _, ch := range changes {
				fmt.Fprintln(w, ch)
			}
			if len(changes) == 0 {
				if bytes.Equal(da, db) {
					fmt.Fprintln(w, "identical")
				} else {
					fmt.Fprintln(w, "same terms (the bytes differ: layout or comments)")
				}
			}
			return nil
		},
	}
}

// ---- list

func (c *agreementCtx) listCmd() *cobra.Command {
	var overdue bool
	var status string
	cmd := &cobra.Command{
		Use:   "list [--overdue] [--status S]",
		Short: "List the agreements of the policies folder with their status now, and the refused files",
		Long: `List every agreement version the policies folder holds as the broker loads
it (verified with the keys folder): id, version, status now (validity and
lifecycle statements applied), validity, review deadline, signatures and
file; then every refused file with its reason. --status keeps those whose
status now is S; --overdue keeps the proposals whose review deadline has
passed and that no later version of their id has superseded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && !slices.Contains([]policies.Status{policies.StatusProposed, policies.StatusActive, policies.StatusSuspended, policies.StatusExpired, policies.StatusTerminated}, policies.Status(status)) {
				return usagef("--status %q: want proposed, active, suspended, expired or terminated", status)
			}
			dir, err := c.policiesDir()
			if err != nil {
				return err
			}
			reg, err := c.registry()
			if err != nil {
				return err
			}
			now, err := c.now()
			if err != nil {
				return err
			}
			set, problems := c.load(dir, reg)
			if len(problems) == 1 && problems[0].File == dir {
				return fmt.Errorf("%s: %v", dir, problems[0].Err)
			}
			all := set.Agreements()
			highest := map[string]int{}
			for _, i := range all {
				highest[i.Ref.ID] = max(highest[i.Ref.ID], i.Ref.Version)
			}
			tw := tabwriter.NewWriter(c.g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tSTATUS\tVALIDITY\tREVIEW BY\tSIGNED\tFILE")
			n := 0
			for _, i := range all {
				st, note := statusOf(i, now)
				if st == policies.StatusProposed && highest[i.Ref.ID] > i.Ref.Version {
					note = fmt.Sprintf(" (superseded by v%d)", highest[i.Ref.ID])
				}
				if status != "" && st != policies.Status(status) {
					continue
				}
				late := st == policies.StatusProposed && i.Agreement.ReviewDeadline != nil && now.After(*i.Agreement.ReviewDeadline) && highest[i.Ref.ID] == i.Ref.Version
				if overdue && !late {
					continue
				}
				review := "-"
				if d := i.Agreement.ReviewDeadline; d != nil {
					review = d.In(policies.Beijing).Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s%s\t%s .. %s\t%s\t%d/2\t%s\n", i.Ref.ID, i.Ref.Version, st, note,
					i.Agreement.Validity.From.Format(time.DateOnly), i.Agreement.Validity.Until.Format(time.DateOnly),
					review, len(i.Signers), i.File)
				n++
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(c.g.stdout, "%d listed (of %d loaded) from %s at %s\n", n, len(all), dir, now.In(policies.Beijing).Format(time.RFC3339))
			for _, p := range problems {
				fmt.Fprintf(c.g.stdout, "refused %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&overdue, "overdue", false, "only proposals whose review deadline has passed")
	cmd.Flags().StringVar(&status, "status", "", "only agreements with this status now")
	return cmd
}

// ---- suspend, resume, terminate

func (c *agreementCtx) statementCmd(verb string, to policies.Status, short string) *cobra.Command {
	var as, at string
	cmd := &cobra.Command{
		Use:   verb + " FILE --as PARTY [--at TIME]",
		Short: short,
		Long: short + `: a lifecycle statement signed by PARTY's current signing key,
appended to FILE.status.jws (one compact JWS per line), effective from --at
(default now). Refused unless FILE is co-signed by both parties and the
statement is allowed (only the party that suspended may resume; nothing
follows termination). A running broker picks it up within 2s.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" {
				return usagef("--as PARTY is required")
			}
			now, err := c.now()
			if err != nil {
				return err
			}
			when := now
			if at != "" {
				if when, err = parseInstant(at); err != nil {
					return usagef("--at: %v", err)
				}
			}
			return c.statement(args[0], as, to, when, now)
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the party making the statement")
	cmd.Flags().StringVar(&at, "at", "", "when it takes effect (default now)")
	return cmd
}

func (c *agreementCtx) statement(path, party string, to policies.Status, at, now time.Time) error {
	doc, a, err := readPartyAgreement(path, party)
	if err != nil {
		return err
	}
	kd, err := c.keysFolder()
	if err != nil {
		return err
	}
	reg, err := keys.LoadDir(kd)
	if err != nil {
		return err
	}
	sigs, err := readOptional(path + policies.SignaturesSuffix)
	if err != nil {
		return err
	}
	if err := policies.Verify(doc, sigs, reg, a); err != nil {
		return fmt.Errorf("%s is not co-signed, so it has no lifecycle: %w", path, err)
	}
	stPath := path + policies.StatusSuffix
	old, err := readOptional(stPath)
	if err != nil {
		return err
	}
	if _, err := policies.ParseStatements(old, doc, a, reg); err != nil {
		return fmt.Errorf("%s is refused already: %w", stPath, err)
	}
	key, err := keys.SigningKey(kd, party, at)
	if err != nil {
		return err
	}
	line, err := policies.SignStatement(doc, a, to, key, at)
	if err != nil {
		return err
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		line = append([]byte{'\n'}, line...)
	}
	stmts, err := policies.ParseStatements(append(slices.Clone(old), line...), doc, a, reg)
	if err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	fh, err := os.OpenFile(stPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.Write(line); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	st, note := statusOf(policies.Info{Agreement: a, Statements: stmts}, now)
	fmt.Fprintf(c.g.stdout, "%s v%d: %s by %s (%s) from %s\n  statement appended to %s\n  status now: %s%s\n",
		a.ID, a.Version, to, party, key.KID(), at.In(policies.Beijing).Format(time.RFC3339), stPath, st, note)
	c.pickUp()
	return nil
}

// ---- helpers

func (c *agreementCtx) pickUp() {
	fmt.Fprintf(c.g.stdout, "a running broker picks this up within %v\n", policies.DefaultWatchInterval)
}

func readAgreement(path string) ([]byte, *policies.Agreement, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	a, err := policies.Parse(doc)
	if err != nil {
		return nil, nil, &policies.Error{Reason: policies.ReasonInvalidAgreement, Detail: path, Err: err}
	}
	return doc, a, nil
}

// readOptional reads a file that may be absent (nil then).
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// writeAtomic replaces path with b through a temporary file and a rename,
// so a broker polling the folder never reads half a file.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func missingParties(a *policies.Agreement, ss []policies.Signer) []string {
	var out []string
	for _, p := range []string{a.Parties.Requester, a.Parties.Provider} {
		if !slices.ContainsFunc(ss, func(s policies.Signer) bool { return s.Party == p }) {
			out = append(out, p)
		}
	}
	return out
}

// parseInstant reads RFC 3339, or a date as midnight Beijing time.
func parseInstant(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation(time.DateOnly, s, policies.Beijing)
	if err != nil {
		return t, fmt.Errorf("%q: want RFC 3339 (2026-12-01T09:00:00+08:00) or a date (2026-12-01)", s)
	}
	return t, nil
}

func queryNames() []string {
	var out []string
	for _, q := range adapters.AllQueryTypes() {
		out = append(out, string(q))
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
