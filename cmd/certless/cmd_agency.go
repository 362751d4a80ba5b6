package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// agencyCtx is what every agency subcommand shares: the directory on the
// configured store DSN, with the store's transparency log.
type agencyCtx struct {
	g       *globals
	actor   string         // --actor
	noKafka bool           // --no-kafka
	cfg     *config.Config // set by open
}

// open opens the log and the directory on the configured store DSN and,
// on an empty directory, imports the configuration's agencies and record
// sources (the first start); the caller calls the returned close.
func (c *agencyCtx) open(ctx context.Context) (*directory.Directory, func(), error) {
	cfg, err := c.g.loadConfig(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
	if err != nil {
		return nil, nil, err
	}
	dir, err := directory.Open(ctx, cfg.Store.DSN, st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	c.cfg = cfg
	closeAll := func() { dir.Close(); st.Close() }
	if len(cfg.Agencies) > 0 || len(cfg.Adapters) > 0 {
		reg, err := keys.LoadDir(cfg.KeysDir)
		if err == nil {
			var cs []directory.Change
			cs, err = dir.ImportConfig(ctx, cfg.Agencies, cfg.Adapters, reg, "config")
			if len(cs) > 0 {
				fmt.Fprintf(c.g.stderr, "first start: imported %d entries of the configuration into the directory\n", len(cs))
			}
		}
		if err != nil {
			fmt.Fprintf(c.g.stderr, "certless: warning: the configuration's agencies were not imported: %v\n", err)
		}
	}
	return dir, closeAll, nil
}

func (c *agencyCtx) who() string {
	if c.actor != "" {
		return c.actor
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "operator"
}

func newAgencyCmd(g *globals) *cobra.Command {
	c := &agencyCtx{g: g}
	cmd := &cobra.Command{
		Use:   "agency",
		Short: "The docking directory: list, show, dock, suspend, resume, rotate-key, export and import agencies",
		Long: `The docking directory, in the decision store's database (store.dsn of the
configuration): every docked agency with its level, GB/T 2260 region, kind,
contact, signing JWKS, optional encryption key and status, and the record
sources. Every change is recorded (see 'changes') and appended to the
transparency log as a leaf holding the agency id, the change and a digest.

The configuration's agencies: and adapters: are imported once, when the
directory is empty (first start); after that the directory is the source of
truth and the configuration's list is not read again.

dock, suspend and resume also act on the configured Kafka cluster (kafka: of
the configuration, as its administrator) unless --no-kafka is given or the
cluster is the embedded dev one: dock creates the agency's topics and, where
the cluster has SASL (kafka.sasl set; it is then expected to run an
authorizer), its SCRAM-SHA-512 user and ACLs; suspend removes the ACLs and
resume restores them.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&c.actor, "actor", "", "who makes the change, as recorded (default: the OS user)")
	cmd.PersistentFlags().BoolVar(&c.noKafka, "no-kafka", false, "change the directory only: leave the Kafka cluster's topics, credentials and ACLs alone (dock, suspend, resume)")
	cmd.AddCommand(c.listCmd(), c.showCmd(), c.dockCmd(), c.suspendCmd(), c.resumeCmd(), c.rotateKeyCmd(), c.exportCmd(), c.importCmd(), c.changesCmd(),
		c.suspendSourceCmd(), c.resumeSourceCmd())
	return cmd
}

func (c *agencyCtx) listCmd() *cobra.Command {
	var out *outputFormat
	cmd := &cobra.Command{
		Use:   "list [--output json]",
		Short: "List the docked agencies and record sources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			as, err := dir.List(cmd.Context())
			if err != nil {
				return err
			}
			ss, err := dir.ListSources(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeAgencyJSON(c.g.stdout, struct {
					Agencies []directory.Agency `json:"agencies"`
					Sources  []directory.Source `json:"sources"`
				}{append([]directory.Agency{}, as...), append([]directory.Source{}, ss...)})
			}
			tw := tabwriter.NewWriter(c.g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLEVEL\tREGION\tKIND\tSTATUS\tVERSION\tENCRYPTED\tNAME")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%v\t%s\n", a.ID, a.Level, a.Region, a.Kind, a.Status, a.Version, a.EncryptionKey != nil, a.Name)
			}
			if len(ss) > 0 {
				fmt.Fprintln(tw, "\nSOURCE\tLEVEL\tREGION\tKIND\tSTATUS\tVERSION\t\tDESCRIPTION")
				for _, s := range ss {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\t%s\n", s.Name, s.Level, s.Region, s.Kind, s.Status, s.Version, s.Description)
				}
			}
			return tw.Flush()
		},
	}
	out = addOutputFlag(cmd)
	return cmd
}

func (c *agencyCtx) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Print an agency's directory entry as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			a, ok, err := dir.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no agency %q in the directory", args[0])
			}
			return writeAgencyJSON(c.g.stdout, a)
		},
	}
}

func writeAgencyJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *agencyCtx) dockCmd() *cobra.Command {
	var a directory.Agency
	var jwksFile, encFile string
	var cred credentialOptions
	cmd := &cobra.Command{
		Use:   "dock --id ID --level L --region CODE --name NAME --kind KIND --jwks FILE [--encryption-key FILE] [--contact TEXT] [--password-file FILE] [--rotate-password] [--no-kafka]",
		Short: "Dock an agency: its directory entry, and on Kafka its topics, SCRAM credential and ACLs",
		Long: `Dock an agency in the directory: its level (province, prefecture, county)
and the GB/T 2260 code of its region at that level (220000 Jilin, 220100
Changchun, 220800 Baicheng, 220582 Ji'an, 222403 Dunhua...), display name,
kind, contact, signing JWKS (every kid "<id>/<key-id>") and, for
confidential receipts, its ECDH-ES+A256KW public key (one JWK).

Docking the same content again records nothing; different content updates
the entry (status kept) at its next version.

On the Kafka cluster of the configuration (unless --no-kafka, or the
cluster is the embedded dev one), as its administrator:

  - the agency's topics <topic_prefix><id>.requests and
    <topic_prefix><id>.receipts are created with kafka.partitions and
    kafka.replication_factor (existing topics are left as they are);
  - where kafka.sasl is set, the agency's user <id> gets a SCRAM-SHA-512
    credential with a random password (32 random bytes, base64url), written
    to --password-file (mode 0600; an existing file is refused unless
    --rotate-password) or else printed once on stdout, and never logged.
    A user that has a credential already keeps it: docking again does not
    change the password unless --rotate-password is given;
  - and ACLs for principal User:<id>: WRITE and DESCRIBE on its requests
    topic, READ and DESCRIBE on its receipts topic (both LITERAL), READ on
    the consumer groups whose names start with "<id>." (PREFIXED): the
    agency names its groups "<id>.<anything>". Nothing else is allowed.
    A suspended agency gets no ACLs.

Every step is idempotent: docking again creates nothing that exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.ID == "" || a.Level == "" || a.Region == "" || a.Name == "" || a.Kind == "" || jwksFile == "" {
				return usagef("--id, --level, --region, --name, --kind and --jwks are required")
			}
			var err error
			if a.JWKS, err = os.ReadFile(jwksFile); err != nil {
				return err
			}
			if encFile != "" {
				if a.EncryptionKey, err = os.ReadFile(encFile); err != nil {
					return err
				}
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if err := c.checkCredentialFlags(cred); err != nil {
				return err
			}
			ch, err := dir.Dock(cmd.Context(), a, c.who())
			if errors.Is(err, directory.ErrInvalid) {
				return usageError{err}
			}
			// A change recorded but not yet logged (ErrNotLogged) is
			// still applied on Kafka; the error is returned after.
			rerr := c.report(ch, err, a.ID)
			if rerr != nil && !errors.Is(rerr, directory.ErrNotLogged) {
				return rerr
			}
			docked, ok, err := dir.Get(cmd.Context(), a.ID)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("agency %q not in the directory after docking", a.ID)
			}
			if err := c.provision(cmd.Context(), docked, cred); err != nil {
				return err
			}
			return rerr
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.ID, "id", "", "agency id, e.g. court-changchun")
	f.StringVar(&a.Level, "level", "", "province, prefecture or county")
	f.StringVar(&a.Region, "region", "", "GB/T 2260 region code of that level, e.g. 220100")
	f.StringVar(&a.Name, "name", "", "display name")
	f.StringVar(&a.Kind, "kind", "", "one of: court, procuratorate, education, notary, civil_affairs, social_security, human_resources, health, tax, housing, market_regulation, police, other")
	f.StringVar(&a.Contact, "contact", "", "how to reach the agency's operators")
	f.StringVar(&jwksFile, "jwks", "", "the agency's public signing JWK Set (e.g. from 'certless keys jwks')")
	f.StringVar(&encFile, "encryption-key", "", "the agency's public ECDH-ES+A256KW JWK, for confidential receipts")
	f.StringVar(&cred.passwordFile, "password-file", "", "write the agency's new Kafka SCRAM password to this file (mode 0600) instead of printing it")
	f.BoolVar(&cred.rotate, "rotate-password", false, "give the agency's Kafka user a new password even if it has one (overwrites --password-file)")
	return cmd
}

// report prints what a change recorded (or that nothing changed).
func (c *agencyCtx) report(ch directory.Change, err error, id string) error {
	if err != nil && !errors.Is(err, directory.ErrNotLogged) {
		return err
	}
	if ch.None() {
		fmt.Fprintf(c.g.stdout, "%s: unchanged, nothing recorded\n", id)
		return nil
	}
	printDirectoryChange(c.g.stdout, ch)
	return err // the change is recorded; its leaf comes with the next change or start
}

func printDirectoryChange(w io.Writer, ch directory.Change) {
	leaf := "leaf pending"
	if ch.LeafIndex >= 0 {
		leaf = "leaf " + strconv.FormatInt(ch.LeafIndex, 10)
	}
	note := ""
	if ch.Note != "" {
		note = fmt.Sprintf(" (%s)", ch.Note)
	}
	fmt.Fprintf(w, "#%d %s %s %s %s by %s%s, %s, %s\n", ch.Seq, ch.At.Format("2006-01-02T15:04:05Z"), ch.Entity, ch.ID, ch.Change, ch.Actor, note, ch.Digest, leaf)
}

func (c *agencyCtx) suspendCmd() *cobra.Command {
	return c.statusCmd("suspend ID --reason TEXT",
		"Suspend an agency in the directory and remove its Kafka ACLs until it is resumed: running brokers answer its requests denied/agency_suspended within seconds",
		true, false, true, (*directory.Directory).Suspend)
}

func (c *agencyCtx) suspendSourceCmd() *cobra.Command {
	return c.statusCmd("suspend-source NAME --reason TEXT",
		"Take a record source out of routing (maintenance, a data problem): running brokers ask the next level up within seconds",
		true, false, false, (*directory.Directory).SuspendSource)
}

func (c *agencyCtx) resumeSourceCmd() *cobra.Command {
	return c.statusCmd("resume-source NAME [--reason TEXT]", "Put a suspended record source back into routing",
		false, true, false, (*directory.Directory).ResumeSource)
}

func (c *agencyCtx) resumeCmd() *cobra.Command {
	return c.statusCmd("resume ID [--reason TEXT]", "Lift an agency's suspension and restore its Kafka ACLs",
		false, true, true, (*directory.Directory).Resume)
}

// statusCmd is suspend or resume: change the entry's status in the
// directory, then (an agency's, when access) its Kafka access (allow), even
// when the change is recorded but not yet logged (ErrNotLogged, returned
// after).
func (c *agencyCtx) statusCmd(use, short string, needReason, allow, access bool,
	apply func(*directory.Directory, context.Context, string, string, string) (directory.Change, error)) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if needReason && reason == "" {
				return usagef("--reason is required")
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ch, err := apply(dir, cmd.Context(), args[0], c.who(), reason)
			rerr := c.report(ch, err, args[0])
			if rerr != nil && !errors.Is(rerr, directory.ErrNotLogged) {
				return rerr
			}
			if access {
				if err := c.setAccess(cmd.Context(), args[0], allow); err != nil {
					return err
				}
			}
			return rerr
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, as recorded in the change")
	return cmd
}

func (c *agencyCtx) exportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Write the whole directory as an agency_directory.v1 JSON file (stdout by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			f, err := dir.Export(cmd.Context())
			if err != nil {
				return err
			}
			b, err := f.Marshal()
			if err != nil {
				return err
			}
			if out == "" {
				_, err = c.g.stdout.Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(c.g.stdout, "wrote %d agencies and %d record sources to %s\n", len(f.Agencies), len(f.Sources), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default: stdout)")
	return cmd
}

func (c *agencyCtx) importCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Import an agency_directory.v1 file: new entries are docked as the file has them, changed ones take its content",
		Long: `Import an agency_directory.v1 file (as 'export' writes it), validated
against its JSON Schema and entry by entry, in one transaction: one bad
entry imports nothing. Entries not in the directory are inserted as the file
has them (status, who docked them when); entries that differ take the
file's content and status at their next version; the same entries record
nothing; entries the file does not name are left alone. Each insert or
replacement is an "imported" change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			f, err := directory.ParseFile(b)
			if err != nil {
				return err
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			cs, err := dir.Import(cmd.Context(), f, c.who())
			if err != nil && !errors.Is(err, directory.ErrNotLogged) {
				return err
			}
			for _, ch := range cs {
				printDirectoryChange(c.g.stdout, ch)
			}
			fmt.Fprintf(c.g.stdout, "imported %s: %d changes\n", args[0], len(cs))
			return err
		},
	}
}

func (c *agencyCtx) changesCmd() *cobra.Command {
	var since int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "changes [--since SEQ] [--json]",
		Short: "Print the directory's recorded changes, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			cs, err := dir.Changes(cmd.Context(), since)
			if err != nil {
				return err
			}
			if asJSON {
				if cs == nil {
					cs = []directory.Change{}
				}
				return writeAgencyJSON(c.g.stdout, cs)
			}
			for _, ch := range cs {
				printDirectoryChange(c.g.stdout, ch)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&since, "since", 0, "print only changes after this sequence number")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the changes (entries before and after included) as JSON")
	return cmd
}

func (c *agencyCtx) rotateKeyCmd() *cobra.Command {
	var jwksFile string
	cmd := &cobra.Command{
		Use:   "rotate-key ID --jwks FILE",
		Short: "Replace an agency's signing JWKS (every kid \"<id>/<key-id>\")",
		Long: `Replace an agency's signing JWKS in the directory ("key_rotated"). Publish
the new key alongside the old one while requests signed with the old key
are in flight, then rotate again to the set without it. The same JWKS
records nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if jwksFile == "" {
				return usagef("--jwks is required")
			}
			jwks, err := os.ReadFile(jwksFile)
			if err != nil {
				return err
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ch, err := dir.RotateKey(cmd.Context(), args[0], jwks, c.who())
			if errors.Is(err, directory.ErrInvalid) {
				return usageError{err}
			}
			return c.report(ch, err, args[0])
		},
	}
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "the agency's new public signing JWK Set")
	return cmd
}

// credentialOptions are dock's flags for the agency's SCRAM password.
type credentialOptions struct {
	passwordFile string // --password-file
	rotate       bool   // --rotate-password
}

// agencyGroupPrefix is the prefix of every consumer group an agency may
// use on a secured cluster: "<id>.", so its groups are "<id>.<anything>"
// (e.g. "court-changchun.receipts").
func agencyGroupPrefix(id string) string { return id + "." }

// kafkaAccess is the Kafka admin configuration and agency id's access, or
// ok false (with a note printed) when this command leaves Kafka alone.
func (c *agencyCtx) kafkaAccess(id string) (bkafka.Config, bkafka.AgencyAccess, bool) {
	k := c.cfg.Kafka
	switch {
	case c.noKafka:
		return bkafka.Config{}, bkafka.AgencyAccess{}, false
	case k.Embedded:
		fmt.Fprintf(c.g.stdout, "%s: kafka is the embedded dev cluster: a running broker creates its topics within seconds; no credential or ACL to provision\n", id)
		return bkafka.Config{}, bkafka.AgencyAccess{}, false
	case len(k.Brokers) == 0:
		fmt.Fprintf(c.g.stdout, "%s: no kafka brokers configured, nothing provisioned\n", id)
		return bkafka.Config{}, bkafka.AgencyAccess{}, false
	}
	topics := broker.Topics{Prefix: k.TopicPrefix}
	acc := bkafka.AgencyAccess{
		Principal:     id,
		RequestsTopic: topics.Requests(id),
		ReceiptsTopic: topics.Receipts(id),
		GroupPrefix:   agencyGroupPrefix(id),
		// Every agency reads the periodic-exchange batches sent to it.
		ReadTopics: []string{topics.Batches(id)},
	}
	// A police data owner docked like an agency also reads the disputes
	// forwarded to it.
	if slices.Contains(c.cfg.DataOwners, id) {
		acc.ReadTopics = append(acc.ReadTopics, topics.Disputes(id))
	}
	return kafkaConfig(k), acc, true
}

// embeddedTopics creates agency id's topics on the embedded dev cluster if
// a `certless dev` is running it, so that the agency can send at once; if
// none is, the broker creates them when it starts.
func (c *agencyCtx) embeddedTopics(ctx context.Context, id string) {
	k := c.cfg.Kafka
	topics := broker.Topics{Prefix: k.TopicPrefix}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := bkafka.EnsureTopics(ctx, bkafka.Config{Brokers: k.Brokers, ClientID: "certless-agency"},
		bkafka.TopicSpec{Name: topics.Requests(id), Partitions: k.Partitions, ReplicationFactor: 1},
		bkafka.TopicSpec{Name: topics.Receipts(id), Partitions: k.Partitions, ReplicationFactor: 1})
	if err != nil {
		fmt.Fprintf(c.g.stdout, "%s: the embedded dev cluster at %s is not running; `certless dev` creates its topics when it starts\n", id, strings.Join(k.Brokers, ","))
		return
	}
	fmt.Fprintf(c.g.stdout, "%s: topics %s and %s ready on the embedded dev cluster (no credential or ACL to provision); running brokers consume it within seconds\n", id, topics.Requests(id), topics.Receipts(id))
}

// checkCredentialFlags refuses --password-file and --rotate-password when
// dock will set no credential, before anything is recorded.
func (c *agencyCtx) checkCredentialFlags(cred credentialOptions) error {
	if cred.passwordFile == "" && !cred.rotate {
		return nil
	}
	k := c.cfg.Kafka
	if c.noKafka || k.Embedded || len(k.Brokers) == 0 || k.SASL == nil || k.SASL.Mechanism == "" {
		return usagef("--password-file and --rotate-password need the Kafka part of docking: a configured cluster with kafka.sasl, and no --no-kafka")
	}
	return nil
}

// kafkaAdminTimeout bounds the Kafka part of one agency command.
const kafkaAdminTimeout = 2 * time.Minute

// provision creates agency a's topics, and on a cluster with SASL its
// SCRAM credential and (unless a is suspended) its ACLs; see dock's help.
func (c *agencyCtx) provision(ctx context.Context, a directory.Agency, cred credentialOptions) error {
	if k := c.cfg.Kafka; k.Embedded && !c.noKafka && len(k.Brokers) > 0 {
		c.embeddedTopics(ctx, a.ID)
		return nil
	}
	kc, acc, ok := c.kafkaAccess(a.ID)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaAdminTimeout)
	defer cancel()
	k := c.cfg.Kafka
	if err := bkafka.EnsureTopics(ctx, kc,
		bkafka.TopicSpec{Name: acc.RequestsTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor},
		bkafka.TopicSpec{Name: acc.ReceiptsTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor}); err != nil {
		return fmt.Errorf("%s: topics: %w", a.ID, bkafka.Explain(ctx, kc, err))
	}
	fmt.Fprintf(c.g.stdout, "%s: topics %s and %s ready\n", a.ID, acc.RequestsTopic, acc.ReceiptsTopic)
	if !bkafka.HasSecurity(kc) {
		fmt.Fprintf(c.g.stdout, "%s: kafka has no SASL configured: no credential or ACLs provisioned\n", a.ID)
		return nil
	}
	if err := c.ensureCredential(ctx, kc, a.ID, cred); err != nil {
		return err
	}
	if a.Status == directory.Suspended {
		if err := bkafka.RevokeAgencyAccess(ctx, kc, acc); err != nil {
			return fmt.Errorf("%s: ACLs: %w", a.ID, err)
		}
		fmt.Fprintf(c.g.stdout, "%s: suspended: no ACLs for User:%s\n", a.ID, a.ID)
		return nil
	}
	if err := bkafka.EnsureAgencyAccess(ctx, kc, acc); err != nil {
		return fmt.Errorf("%s: ACLs: %w", a.ID, err)
	}
	fmt.Fprintf(c.g.stdout, "%s: ACLs for User:%s: write %s, read %s, groups %s*\n", a.ID, a.ID, acc.RequestsTopic, acc.ReceiptsTopic, acc.GroupPrefix)
	return nil
}

// ensureCredential gives user a SCRAM-SHA-512 credential unless it has one
// (or replaces it with --rotate-password). The new password goes to
// --password-file, written before the credential is set so it cannot be
// lost, or to stdout; it is never logged.
func (c *agencyCtx) ensureCredential(ctx context.Context, kc bkafka.Config, user string, cred credentialOptions) error {
	has, err := bkafka.HasSCRAM(ctx, kc, user)
	if err != nil {
		return fmt.Errorf("%s: credential: %w", user, err)
	}
	if has && !cred.rotate {
		fmt.Fprintf(c.g.stdout, "%s: User:%s has a SCRAM-SHA-512 credential, kept (--rotate-password replaces it)\n", user, user)
		return nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	password := base64.RawURLEncoding.EncodeToString(raw)
	if cred.passwordFile != "" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if cred.rotate {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(cred.passwordFile, flags, 0o600)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: password file %s exists and User:%s has no credential: not overwritten (--rotate-password sets a new password and overwrites it)", user, cred.passwordFile, user)
		}
		if err != nil {
			return fmt.Errorf("%s: password file: %w", user, err)
		}
		err = f.Chmod(0o600) // an existing file keeps its mode otherwise
		if err == nil {
			_, err = f.WriteString(password + "\n")
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: password file: %w", user, err)
		}
		if err := bkafka.UpsertSCRAM(ctx, kc, user, password); err != nil {
			if !cred.rotate {
				os.Remove(cred.passwordFile) // it holds a password nobody has
			}
			return fmt.Errorf("%s: credential: %w", user, err)
		}
		fmt.Fprintf(c.g.stdout, "%s: User:%s SCRAM-SHA-512 credential set, password written to %s\n", user, user, cred.passwordFile)
		return nil
	}
	if err := bkafka.UpsertSCRAM(ctx, kc, user, password); err != nil {
		return fmt.Errorf("%s: credential: %w", user, err)
	}
	fmt.Fprintf(c.g.stdout, "%s: User:%s SCRAM-SHA-512 credential set; its password, shown this once:\n%s\n", user, user, password)
	return nil
}

// setAccess restores (allow) or removes agency id's ACLs on a cluster with
// SASL, for resume and suspend.
func (c *agencyCtx) setAccess(ctx context.Context, id string, allow bool) error {
	kc, acc, ok := c.kafkaAccess(id)
	if !ok {
		return nil
	}
	if !bkafka.HasSecurity(kc) {
		fmt.Fprintf(c.g.stdout, "%s: kafka has no SASL configured: no ACLs to change\n", id)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaAdminTimeout)
	defer cancel()
	if allow {
		if err := bkafka.EnsureAgencyAccess(ctx, kc, acc); err != nil {
			return fmt.Errorf("%s: ACLs: %w", id, err)
		}
		fmt.Fprintf(c.g.stdout, "%s: ACLs for User:%s restored\n", id, id)
		return nil
	}
	if err := bkafka.RevokeAgencyAccess(ctx, kc, acc); err != nil {
		return fmt.Errorf("%s: ACLs: %w", id, err)
	}
	fmt.Fprintf(c.g.stdout, "%s: ACLs for User:%s removed\n", id, id)
	return nil
}
