package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/feedback"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Prepare PostgreSQL for least-privilege operation: schema, broker grants, records reader role",
		Args:  cobra.NoArgs,
	}
	var dsn, brokerRole, readerRole, database string
	migrate := &cobra.Command{
		Use:   "migrate --db DSN",
		Short: "Create or upgrade the decision store's and docking directory's schema (run as the schema owner)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" {
				return usagef("--db is required")
			}
			if err := store.Migrate(cmd.Context(), dsn); err != nil {
				return err
			}
			if err := directory.Migrate(cmd.Context(), dsn); err != nil {
				return err
			}
			if err := feedback.Migrate(cmd.Context(), dsn); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "decision store, docking directory and feedback schema ready in %s\n", redactDSN(dsn))
			return nil
		},
	}
	migrate.Flags().StringVar(&dsn, "db", "", "decision store DSN of the schema owner")

	brokerGrants := &cobra.Command{
		Use:   "broker-grants --role NAME",
		Short: "Print the SQL giving the broker's role what it needs: SELECT and INSERT on decisions and the log, SELECT on the docking directory, nothing more",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if brokerRole == "" {
				return usagef("--role is required")
			}
			fmt.Fprint(g.stdout, store.PostgresRoleSQL(brokerRole))
			fmt.Fprint(g.stdout, directory.PostgresRoleSQL(brokerRole))
			fmt.Fprintln(g.stdout, feedback.PostgresRoleSQL(brokerRole))
			return nil
		},
	}
	brokerGrants.Flags().StringVar(&brokerRole, "role", "certless_broker", "the broker's login role")

	reader := &cobra.Command{
		Use:   "reader-role --database DB --role NAME",
		Short: "Print the SQL creating the SELECT-only role a SQL record source connects as (password from $CERTLESS_READER_PASSWORD)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if database == "" || readerRole == "" {
				return usagef("--database and --role are required")
			}
			pw := os.Getenv("CERTLESS_READER_PASSWORD")
			if pw == "" {
				return usagef("set CERTLESS_READER_PASSWORD to the role's password")
			}
			fmt.Fprintln(g.stdout, strings.Join(sqlsource.ReaderRoleSQL(database, readerRole, pw), ";\n")+";")
			return nil
		},
	}
	reader.Flags().StringVar(&database, "database", "", "the records database")
	reader.Flags().StringVar(&readerRole, "role", "certless_reader", "the reader role")
	cmd.AddCommand(migrate, brokerGrants, reader)
	return cmd
}
