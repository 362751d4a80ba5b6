package store_test

import (
	"fmt"

	"github.com/certless/certless/broker/store"
)

// The grants of an auditor's role, to run as the schema owner after
// Migrate: SELECT on the decisions and the log, nothing else.
func ExamplePostgresAuditorRoleSQL() {
	fmt.Print(store.PostgresAuditorRoleSQL("certless_auditor"))
	// Output:
	// GRANT USAGE ON SCHEMA public TO "certless_auditor";
	// REVOKE ALL ON decisions, decisions_schema_version, quota_usage, tlog_sequence, tlog_integration, tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures FROM "certless_auditor";
	// GRANT SELECT ON decisions, decisions_schema_version, tlog_sequence, tlog_integration, tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures TO "certless_auditor";
	// ALTER ROLE "certless_auditor" SET default_transaction_read_only = on;
}
