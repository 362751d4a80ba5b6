package directory

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migrate creates or upgrades the directory's tables at dsn (run as the
// schema owner, beside store.Migrate).
func Migrate(ctx context.Context, dsn string) error {
	d, err := openDB(ctx, dsn)
	if err != nil {
		return err
	}
	return d.Close()
}

// PostgresRoleSQL is the SQL granting a broker's login role what it needs of
// the directory, nothing more: reading every entry and change (to follow
// the directory) and recording the log index of a change whose leaf it
// appends (FlushLeaves). Docking, suspending and importing are the
// operators' (`certless agency`, as the schema owner or a role granted
// INSERT and UPDATE): the broker cannot change who may ask it. Run it after
// Migrate.
func PostgresRoleSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	return strings.Join([]string{
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`REVOKE ALL ON directory_agencies, directory_sources, directory_changes, directory_change_leaves, directory_schema_version FROM ` + r,
		`GRANT SELECT ON directory_agencies, directory_sources, directory_changes, directory_schema_version TO ` + r,
		`GRANT SELECT, INSERT ON directory_change_leaves TO ` + r,
	}, ";\n") + ";\n"
}
