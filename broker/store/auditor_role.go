package store

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// PostgresAuditorRoleSQL returns the statements that let role read the
// decisions and the transparency log and change nothing, for `certless
// audit verify` against a PostgreSQL store. Run them as the schema owner
// after Migrate. Besides decisions and the tlog_* tables the role reads
// decisions_schema_version, which Open checks before it touches anything;
// every transaction of the role is read-only by default as well.
func PostgresAuditorRoleSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	const logTables = `tlog_sequence, tlog_integration, tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures`
	return strings.Join([]string{
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`REVOKE ALL ON decisions, decisions_schema_version, quota_usage, ` + logTables + ` FROM ` + r,
		`GRANT SELECT ON decisions, decisions_schema_version, ` + logTables + ` TO ` + r,
		`ALTER ROLE ` + r + ` SET default_transaction_read_only = on`,
	}, ";\n") + ";\n"
}
