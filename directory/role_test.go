package directory_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/internal/testenv"
)

// TestPostgresBrokerRoleReadsOnly: with the grants of store.PostgresRoleSQL
// and directory.PostgresRoleSQL, a broker's role opens and follows the
// directory (and logs a change an operator left unlogged) but cannot dock,
// suspend or rewrite an entry.
func TestPostgresBrokerRoleReadsOnly(t *testing.T) {
	ctx := context.Background()
	adminDSN := testenv.PostgresDB(t)
	if err := store.Migrate(ctx, adminDSN); err != nil {
		t.Fatal(err)
	}
	if err := directory.Migrate(ctx, adminDSN); err != nil {
		t.Fatal(err)
	}
	// An operator docks without a log: the change waits for its leaf.
	ops, err := directory.Open(ctx, adminDSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	a := court(t)
	if _, err := ops.Dock(ctx, a, "ops-alice"); err != nil {
		t.Fatal(err)
	}

	admin, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role, password := "certless_broker_"+testenv.Random(4), testenv.Random(12)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), adminDSN)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	if _, err := admin.Exec(ctx, store.PostgresRoleSQL(role)+directory.PostgresRoleSQL(role)); err != nil {
		t.Fatalf("grants: %v", err)
	}
	u, _ := url.Parse(adminDSN)
	u.User = url.UserPassword(role, password)
	brokerDSN := u.String()

	st, err := store.Open(ctx, brokerDSN, store.Options{})
	if err != nil {
		t.Fatalf("store as broker: %v", err)
	}
	defer st.Close()
	d, err := directory.Open(ctx, brokerDSN, st)
	if err != nil {
		t.Fatalf("directory as broker: %v", err)
	}
	defer d.Close()
	cs, err := d.Changes(ctx, 0)
	if err != nil || len(cs) != 1 || cs[0].LeafIndex < 0 {
		t.Fatalf("the broker's Open should have logged the operator's change: %+v, %v", cs, err)
	}
	snap, err := d.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := snap.Agency(a.ID); !ok || got.Status != directory.Active {
		t.Fatalf("snapshot as broker: %+v", snap)
	}
	denied := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as broker: %v, want permission denied (42501)", what, err)
		}
	}
	_, err = d.Suspend(ctx, a.ID, "broker", "no")
	denied("suspend", err)
	other := a
	other.ID, other.JWKS = "court-jilin", jwks(t, "court-jilin", "EdDSA")
	_, err = d.Dock(ctx, other, "broker")
	denied("dock", err)
	b, err := pgx.Connect(ctx, brokerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	_, err = b.Exec(ctx, "UPDATE directory_agencies SET status = 'active'")
	denied("update", err)
	_, err = b.Exec(ctx, "DELETE FROM directory_changes")
	denied("delete", err)
}
