package sqlsource_test

import (
	"fmt"

	"github.com/certless/certless/adapters/sqlsource"
)

// The statements an administrator runs (or CreateReaderRole runs) so that a
// Source can connect with SELECT on the record tables and nothing else.
func ExampleReaderRoleSQL() {
	for _, s := range sqlsource.ReaderRoleSQL("records", "certless_reader", "change-me") {
		fmt.Println(s + ";")
	}
	// Output:
	// CREATE ROLE "certless_reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 64 PASSWORD 'change-me';
	// ALTER ROLE "certless_reader" SET default_transaction_read_only = on;
	// REVOKE CREATE ON SCHEMA public FROM PUBLIC;
	// GRANT CONNECT ON DATABASE "records" TO "certless_reader";
	// GRANT USAGE ON SCHEMA public TO "certless_reader";
	// GRANT SELECT ON TABLE households, persons, kinship, former_names, residences, criminal_records TO "certless_reader";
}
