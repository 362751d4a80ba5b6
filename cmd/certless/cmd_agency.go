package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/keys"
)

// agencyCtx is what every agency subcommand shares: the directory on the
// configured store DSN, with the store's transparency log.
type agencyCtx struct {
	g     *globals
	actor string // --actor
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
		Short: "The docking directory: list, show, dock, suspend, resume, export and import agencies",
		Long: `The docking directory, in the decision store's database (store.dsn of the
configuration): every docked agency with its level, GB/T 2260 region, kind,
contact, signing JWKS, optional encryption key and status, and the record
sources. Every change is recorded (see 'changes') and appended to the
transparency log as a leaf holding the agency id, the change and a digest.

The configuration's agencies: and adapters: are imported once, when the
directory is empty (first start); after that the directory is the source of
truth and the configuration's list is not read again.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&c.actor, "actor", "", "who makes the change, as recorded (default: the OS user)")
	cmd.AddCommand(c.listCmd(), c.showCmd(), c.dockCmd(), c.suspendCmd(), c.resumeCmd(), c.exportCmd(), c.importCmd(), c.changesCmd())
	return cmd
}

func (c *agencyCtx) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the docked agencies and record sources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
	cmd := &cobra.Command{
		Use:   "dock --id ID --level L --region CODE --name NAME --kind KIND --jwks FILE [--encryption-key FILE] [--contact TEXT]",
		Short: "Dock an agency in the directory, or update its entry (directory only; topics and credentials come with the Kafka part)",
		Long: `Dock an agency in the directory: its level (province, prefecture, county)
and the GB/T 2260 code of its region at that level (220000 Jilin, 220100
Changchun, 220800 Baicheng, 220582 Ji'an, 222403 Dunhua...), display name,
kind, contact, signing JWKS (every kid "<id>/<key-id>") and, for
confidential receipts, its ECDH-ES+A256KW public key (one JWK).

Docking the same content again records nothing; different content updates
the entry (status kept) at its next version.

This records the directory entry only: the agency's Kafka topics, ACLs and
credentials are provisioned by the Kafka part of docking, not by this
command.`,
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
			ch, err := dir.Dock(cmd.Context(), a, c.who())
			if errors.Is(err, directory.ErrInvalid) {
				return usageError{err}
			}
			return c.report(ch, err, a.ID)
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
	var reason string
	cmd := &cobra.Command{
		Use:   "suspend ID --reason TEXT",
		Short: "Suspend an agency: the broker refuses its requests until it is resumed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason is required")
			}
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ch, err := dir.Suspend(cmd.Context(), args[0], c.who(), reason)
			return c.report(ch, err, args[0])
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, as recorded in the change")
	return cmd
}

func (c *agencyCtx) resumeCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "resume ID [--reason TEXT]",
		Short: "Lift an agency's suspension",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, done, err := c.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ch, err := dir.Resume(cmd.Context(), args[0], c.who(), reason)
			return c.report(ch, err, args[0])
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
