package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// Results of a doctor check.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
)

// doctorCheck is one line of `certless doctor`.
type doctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

// doctorTimeout bounds each check that talks to a service.
const doctorTimeout = 10 * time.Second

func newDoctorCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "Check the configuration, keys, Kafka, the store, record sources and the log, with a fix for each problem",
		Long: `doctor checks what a broker needs, without changing anything, and prints one
line per check: ok, warn or fail, what it found and, for a problem, how to
fix it.

  config             the configuration loads and validates
  keys.*             the keys folder, private key file permissions, the
                     broker's signing key and the log key, the agencies' keys
                     (revoked, or revoked from a set time on)
  kafka.*            the brokers answer (TCP, TLS, SASL, metadata), the
                     agencies' and the dead-letter topics exist, and the
                     agencies' ACLs where the cluster shows them
  store.*            the decision store is reachable, migrated and takes a
                     write (in a transaction that is rolled back)
  source.NAME        each record source answers its health probe
  transparency_log   no leaf waits for a checkpoint longer than
                     transparency.tolerance

It exits 0 when no check fails (warnings allowed), 1 otherwise.`,
		Example: `  certless doctor
  certless --config /etc/certless/config.yaml doctor --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := runDoctor(cmd.Context(), g, time.Now)
			if err := printDoctor(g.stdout, checks, asJSON); err != nil {
				return err
			}
			failed := 0
			for _, c := range checks {
				if c.Status == checkFail {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("doctor: %d of %d checks failed", failed, len(checks))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"ok": bool, "checks": [{name, status, detail, hint}]}`)
	return cmd
}

func printDoctor(w io.Writer, checks []doctorCheck, asJSON bool) error {
	if asJSON {
		ok := !slices.ContainsFunc(checks, func(c doctorCheck) bool { return c.Status == checkFail })
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			OK     bool          `json:"ok"`
			Checks []doctorCheck `json:"checks"`
		}{ok, checks})
	}
	width := 0
	for _, c := range checks {
		width = max(width, len(c.Name))
	}
	for _, c := range checks {
		line := fmt.Sprintf("%-4s  %-*s  %s", c.Status, width, c.Name, c.Detail)
		if c.Hint != "" {
			line += " — fix: " + c.Hint
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// doctor collects the checks of one run.
type doctor struct {
	cfg    *config.Config
	now    func() time.Time
	checks []doctorCheck
}

func (d *doctor) add(name, status, detail, hint string) {
	d.checks = append(d.checks, doctorCheck{Name: name, Status: status, Detail: detail, Hint: hint})
}

// runDoctor runs every check; one that cannot run without an earlier one
// (Kafka topics without a reachable cluster) is left out.
func runDoctor(ctx context.Context, g *globals, now func() time.Time) []doctorCheck {
	d := &doctor{now: now}
	cfg, err := g.loadConfig(os.Getenv)
	if err != nil {
		d.add("config", checkFail, err.Error(), "correct the file named (`certless dev` writes a valid one to start from)")
		return d.checks
	}
	d.cfg = cfg
	d.checkConfig(g)
	d.checkKeys()
	d.checkKafka(ctx)
	h, ok := d.checkStore(ctx)
	d.checkSources(ctx)
	if ok {
		d.checkLog(h)
	}
	return d.checks
}

func (d *doctor) checkConfig(g *globals) {
	path := cmp.Or(g.configPath, os.Getenv(config.EnvConfig))
	if path == "" {
		if p := filepath.Join(g.resolveDataDir(os.Getenv), config.FileName); fileExists(p) {
			path = p
		}
	}
	summary := fmt.Sprintf("broker %s, %d agencies, %d record sources", d.cfg.BrokerID, len(d.cfg.Agencies), len(d.cfg.Adapters))
	if path == "" {
		d.add("config", checkWarn, "no configuration file: built-in dev defaults ("+summary+")",
			"pass --config FILE, or run `certless dev` once to write "+filepath.Join(d.cfg.DataDir, config.FileName))
		return
	}
	d.add("config", checkOK, path+" loads and validates ("+summary+")", "")
}

// checkKeys: the folder parses, no secret is readable by others, the
// broker's signing key and the log key are usable, every agency of the
// configuration has a signing key that is not revoked.
func (d *doctor) checkKeys() {
	cfg, now := d.cfg, d.now()
	if _, err := os.Stat(cfg.KeysDir); err != nil {
		d.add("keys.folder", checkFail, err.Error(), "set keys_dir, or run `certless dev` once (or `certless keys generate`) to create it")
		return
	}
	reg, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		d.add("keys.folder", checkFail, err.Error(), "correct or remove the file named in "+cfg.KeysDir)
		return
	}
	d.add("keys.folder", checkOK, fmt.Sprintf("%s: public keys of %d agencies", cfg.KeysDir, len(reg.Agencies())), "")

	// Permissions of every secret at rest.
	secrets, _ := filepath.Glob(filepath.Join(cfg.KeysDir, "*.key.json"))
	secrets = append(secrets, cfg.LogKeyFile(), filepath.Join(cfg.KeysDir, "subject.key"))
	var loose []string
	for _, f := range secrets {
		if _, err := keys.ReadSecret(f); errors.Is(err, keys.ErrKeyFilePerm) {
			loose = append(loose, f)
		}
	}
	if len(loose) > 0 {
		d.add("keys.permissions", checkFail, fmt.Sprintf("%d secret files readable by group or others: %s", len(loose), strings.Join(loose, ", ")),
			"chmod 600 "+strings.Join(loose, " "))
	} else {
		d.add("keys.permissions", checkOK, fmt.Sprintf("%d secret files, none readable by group or others", countExisting(secrets)), "")
	}

	// The broker's signing key.
	bk, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, now)
	switch {
	case errors.Is(err, keys.ErrKeyFilePerm):
		d.add("keys.broker", checkFail, err.Error(), "chmod 600 the file named")
	case err != nil:
		d.add("keys.broker", checkFail, err.Error(), fmt.Sprintf("`certless keys generate --agency %s`", cfg.BrokerID))
	case !bk.RevokedAt.IsZero():
		d.add("keys.broker", checkWarn, fmt.Sprintf("signing key %s is revoked from %s on", bk.KID(), bk.RevokedAt.UTC().Format(time.RFC3339)),
			fmt.Sprintf("generate its successor before then: `certless keys generate --agency %s`", cfg.BrokerID))
	default:
		d.add("keys.broker", checkOK, "signing key "+bk.KID(), "")
	}

	// The transparency log's key, as the checkpointer reads it.
	if _, err := (&logSigner{cfg: cfg}).signer(); err != nil {
		hint := "`certless log keygen`"
		if errors.Is(err, keys.ErrKeyFilePerm) {
			hint = "chmod 600 " + cfg.LogKeyFile()
		}
		d.add("keys.log", checkFail, err.Error(), hint)
	} else {
		d.add("keys.log", checkOK, cfg.LogKeyFile()+" signs as "+cfg.LogOrigin(), "")
	}

	// The agencies' signing keys.
	var none, ending []string
	for _, a := range cfg.Agencies {
		usable, revoking := false, false
		for _, p := range reg.Agency(a.ID) {
			if p.Use() != keys.UseSig || !p.ValidAt(now) {
				continue
			}
			usable = true
			revoking = revoking || p.Revoked()
		}
		switch {
		case !usable:
			none = append(none, a.ID)
		case revoking:
			ending = append(ending, a.ID)
		}
	}
	switch {
	case len(none) > 0:
		d.add("keys.agencies", checkWarn, "no signing key in force in the keys folder for "+strings.Join(none, ", ")+": their requests are dead-lettered (unknown_key or key_revoked) unless the docking directory has one",
			"`certless keys import --agency ID FILE`, or `certless agency rotate-key ID --jwks FILE`")
	case len(ending) > 0:
		d.add("keys.agencies", checkWarn, "a signing key in force is revoked from a set time on for "+strings.Join(ending, ", "),
			"have the agency send its next public key before then (`certless keys import`)")
	default:
		d.add("keys.agencies", checkOK, fmt.Sprintf("each of the %d agencies has a signing key in force", len(cfg.Agencies)), "")
	}
}

func countExisting(paths []string) int {
	n := 0
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			n++
		}
	}
	return n
}

// checkKafka: every broker passes Diagnose; then the topics and, on a
// cluster with SASL, the agencies' ACLs.
func (d *doctor) checkKafka(ctx context.Context) {
	cfg := d.cfg
	kc := kafkaConfig(cfg.Kafka)
	addrs := strings.Join(kc.Brokers, ", ")
	if err := kc.Validate(); err != nil {
		d.add("kafka", checkFail, err.Error(), "correct kafka.tls / kafka.sasl in the configuration")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	if err := bkafka.Diagnose(cctx, kc); err != nil {
		if cfg.Kafka.Embedded {
			d.add("kafka", checkWarn, "the embedded dev cluster is not running: "+err.Error(),
				"it runs inside `certless dev` (or `serve` with kafka.embedded); start it, then run doctor again")
			return
		}
		d.add("kafka", checkFail, err.Error(),
			"is Kafka running and reachable at "+addrs+"? check kafka.brokers, and kafka.tls / kafka.sasl against the listener")
		return
	}
	d.add("kafka", checkOK, "brokers "+addrs+" answer (connect, TLS, SASL as configured, metadata)", "")

	topics := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
	want := []string{topics.DeadLetter()}
	for _, a := range cfg.Agencies {
		want = append(want, topics.Requests(a.ID), topics.Receipts(a.ID))
	}
	for _, o := range cfg.DataOwners {
		want = append(want, topics.Disputes(o))
	}
	have, err := listTopics(cctx, kc)
	if err != nil {
		d.add("kafka.topics", checkFail, "listing the topics: "+err.Error(), "give the broker's Kafka user DESCRIBE on the topics")
		return
	}
	var missing []string
	for _, t := range want {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		d.add("kafka.topics", checkWarn, fmt.Sprintf("%d of %d topics missing: %s", len(missing), len(want), strings.Join(missing, ", ")),
			"the broker creates them when it starts (`certless serve`); a docked agency's with `certless agency dock`")
	} else {
		d.add("kafka.topics", checkOK, fmt.Sprintf("the %d topics of the dead letters, agencies and data owners exist", len(want)), "")
	}
	d.checkACLs(cctx, kc)
}

// listTopics returns the topics the cluster shows.
func listTopics(ctx context.Context, kc bkafka.Config) (map[string]bool, error) {
	dialer, err := kc.Dialer()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range kc.Brokers {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: broker %s: %w", addr, err))
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		ps, err := conn.ReadPartitions()
		conn.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: broker %s: metadata: %w", addr, err))
			continue
		}
		out := map[string]bool{}
		for _, p := range ps {
			out[p.Topic] = true
		}
		return out, nil
	}
	return nil, errors.Join(errs...)
}

// checkACLs compares each agency's ACLs with what `certless agency dock`
// grants, where the cluster authenticates (SASL) and lets this user see
// them.
func (d *doctor) checkACLs(ctx context.Context, kc bkafka.Config) {
	if !bkafka.HasSecurity(kc) {
		return // no SASL: agencies are not told apart, there are no ACLs to check
	}
	ac := &agencyCtx{g: &globals{stdout: io.Discard, stderr: io.Discard}, cfg: d.cfg}
	var short []string
	for _, a := range d.cfg.Agencies {
		_, acc, ok := ac.kafkaAccess(a.ID)
		if !ok {
			continue
		}
		got, err := bkafka.DescribeAgencyACLs(ctx, kc, a.ID)
		if err != nil {
			d.add("kafka.acls", checkWarn, "ACLs not visible: "+err.Error(),
				"run doctor as a Kafka user allowed DESCRIBE on the cluster to check them")
			return
		}
		for _, b := range acc.Bindings() {
			if !slices.ContainsFunc(got, func(e kafkago.ACLEntry) bool { return e == b }) {
				short = append(short, a.ID)
				break
			}
		}
	}
	if len(short) > 0 {
		d.add("kafka.acls", checkFail, "agencies missing ACLs of their topics or groups: "+strings.Join(short, ", "),
			"`certless agency resume ID` (or `agency dock` again) provisions them as a Kafka administrator")
		return
	}
	d.add("kafka.acls", checkOK, fmt.Sprintf("each of the %d agencies has the ACLs of its topics and groups", len(d.cfg.Agencies)), "")
}

// checkStore: reachable, migrated, takes a write. It returns what it found
// for the log check, ok false when that cannot run.
func (d *doctor) checkStore(ctx context.Context) (store.Health, bool) {
	dsn := d.cfg.Store.DSN
	where := redactDSN(dsn)
	cctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	h, err := store.Inspect(cctx, dsn)
	switch {
	case errors.Is(err, store.ErrNotCreated):
		d.add("store", checkWarn, err.Error(), "`certless dev` or `serve` creates it on first start")
		return h, false
	case err != nil:
		hint := "check store.dsn (host, port, database, user, password) and that the database server runs"
		d.add("store", checkFail, err.Error(), hint)
		return h, false
	}
	d.add("store", checkOK, where+" is reachable", "")
	switch {
	case h.Version > h.Want:
		d.add("store.schema", checkFail, fmt.Sprintf("schema version %d is newer than this binary's %d", h.Version, h.Want), "run the newer certless binary that migrated it")
		return h, false
	case !h.Migrated():
		hint := "start the broker once as the schema owner (`certless serve`), which migrates it"
		if d.cfg.Store.IsPostgres() {
			hint = "`certless db migrate --db DSN` as the schema owner, then `certless db broker-grants --role NAME`"
		}
		d.add("store.schema", checkFail, fmt.Sprintf("schema version %d, this binary needs %d", h.Version, h.Want), hint)
		return h, false
	}
	d.add("store.schema", checkOK, fmt.Sprintf("schema version %d (current)", h.Version), "")
	if h.Writable != nil {
		hint := "check the file's permissions and that no other process holds it"
		if d.cfg.Store.IsPostgres() {
			hint = "grant the broker's role INSERT (`certless db broker-grants --role NAME`), and point store.dsn at the primary, not a read-only replica"
		}
		d.add("store.write", checkFail, "a decision cannot be written: "+h.Writable.Error(), hint)
	} else {
		d.add("store.write", checkOK, "a decision row can be written (probe rolled back)", "")
	}
	return h, true
}

// checkSources opens each record source as the broker does (a SQL source
// reads its tables on open) and asks an HTTP source for its health.
func (d *doctor) checkSources(ctx context.Context) {
	m := broker.NewSourceMetrics(prometheus.NewRegistry())
	for i, a := range d.cfg.Adapters {
		name := "source." + a.Name
		cctx, cancel := context.WithTimeout(ctx, doctorTimeout)
		_, closeFn, err := openSource(cctx, a, m)
		if err == nil {
			if a.Type == "http" {
				err = httpHealth(cctx, a)
			}
			_ = closeFn()
		}
		cancel()
		if err != nil {
			d.add(name, checkFail, fmt.Sprintf("%s source for %s: %v", a.Type, a.Region, err),
				fmt.Sprintf("check adapters[%d].options and that the source runs and lets its reader in", i))
			continue
		}
		d.add(name, checkOK, fmt.Sprintf("%s source for %s answers", a.Type, a.Region), "")
	}
}

// httpHealth asks an HTTP record source for httpsource.HealthPath.
func httpHealth(ctx context.Context, a config.Adapter) error {
	var o httpOptions
	if err := a.DecodeOptions(&o); err != nil {
		return err
	}
	url := strings.TrimRight(o.URL, "/") + httpsource.HealthPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if o.AuthorizationEnv != "" {
		req.Header.Set("Authorization", os.Getenv(o.AuthorizationEnv))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health probe GET %s: %s", url, resp.Status)
	}
	return nil
}

// checkLog: a leaf sequenced but under no checkpoint for longer than the
// tolerance means the broker is not checkpointing (and then stops
// answering). A quiet log makes no checkpoints, so the age of the newest
// one alone says nothing: the oldest leaf waiting is what counts.
func (d *doctor) checkLog(h store.Health) {
	tc := d.cfg.Transparency
	tolerance, interval := cmp.Or(tc.Tolerance.D(), 30*time.Second), cmp.Or(tc.Interval.D(), time.Second)
	now := d.now()
	pending := h.Sequenced - h.Checkpointed
	newest := "no checkpoint yet"
	if !h.CheckpointAt.IsZero() {
		newest = fmt.Sprintf("the newest checkpoint is %s old", now.Sub(h.CheckpointAt).Round(time.Second))
	}
	hint := "check the broker's log (\"transparency log checkpoint failed\"), its /readyz and the log key; a stopped broker checkpoints them when it starts"
	switch {
	case h.Sequenced == 0:
		d.add("transparency_log", checkOK, "empty: no decision yet", "")
	case pending <= 0:
		d.add("transparency_log", checkOK, fmt.Sprintf("all %d leaves are under the newest checkpoint (%s old)", h.Sequenced, now.Sub(h.CheckpointAt).Round(time.Second)), "")
	case h.OldestPending.IsZero():
		d.add("transparency_log", checkWarn, fmt.Sprintf("%d leaves wait for a checkpoint, since an unknown time; %s", pending, newest), hint)
	default:
		wait := now.Sub(h.OldestPending).Round(time.Second)
		detail := fmt.Sprintf("%d leaves wait for a checkpoint, the oldest for %s (transparency.interval %s, tolerance %s); %s", pending, wait, interval, tolerance, newest)
		if wait > tolerance {
			d.add("transparency_log", checkFail, detail+": the broker stops answering past the tolerance", hint)
		} else {
			d.add("transparency_log", checkOK, detail, "")
		}
	}
}
