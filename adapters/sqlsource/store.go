package sqlsource

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certless/certless/adapters/records"
)

// The only statements a Source runs. Placeholders are ?; rebind adapts them.
const (
	personColumns = `p.id_number, p.name, p.sex, p.birth_date, p.household_id, p.relation, p.cancel_reason, p.cancel_date`
	qPerson       = `SELECT ` + personColumns + ` FROM persons p WHERE p.id_number = ?`
	qHousehold    = `SELECT h.id, h.head_id, h.region_code, ` + personColumns + `
		FROM households h JOIN persons p ON p.household_id = h.id WHERE h.id = ?`
	qRelation    = `SELECT relation FROM kinship WHERE person_id = ? AND relative_id = ?`
	qFormerNames = `SELECT seq, name, until_date FROM former_names WHERE person_id = ? ORDER BY seq`
	qResidences  = `SELECT seq, region_code, from_date, to_date FROM residences WHERE person_id = ? ORDER BY seq`
	qCrimes      = `SELECT seq, offence, court, judgment_date, sentence FROM criminal_records WHERE person_id = ? ORDER BY seq`
)

// rowScanner is what both database/sql and pgx rows offer.
type rowScanner interface{ Scan(dest ...any) error }

// querier runs one of the statements above and calls scan for each row,
// before the connection goes back to its pool.
type querier interface {
	query(ctx context.Context, q string, args []any, scan func(rowScanner) error) error
	close() error
}

// sqlQuerier runs prepared statements through database/sql (SQLite).
type sqlQuerier struct {
	db    *sql.DB
	stmts map[string]*sql.Stmt
}

func newSQLQuerier(ctx context.Context, db *sql.DB) (*sqlQuerier, error) {
	s := &sqlQuerier{db: db, stmts: map[string]*sql.Stmt{}}
	for _, q := range append([]string{qPerson, qHousehold, qRelation, qFormerNames, qResidences, qCrimes}, sqliteEventQueries()...) {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("sqlsource: prepare: %w", err)
		}
		s.stmts[q] = st
	}
	return s, nil
}

func (s *sqlQuerier) query(ctx context.Context, q string, args []any, scan func(rowScanner) error) error {
	rows, err := s.stmts[q].QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqlQuerier) close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	return s.db.Close()
}

// pgQuerier runs statements on a pgx pool, whose connections prepare and
// cache them.
type pgQuerier struct{ pool *pgxpool.Pool }

func (p *pgQuerier) query(ctx context.Context, q string, args []any, scan func(rowScanner) error) error {
	rows, err := p.pool.Query(ctx, rebind(Postgres, q), args...)
	if err != nil {
		return err
	}
	defer rows.Close() // releases the connection to the pool
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (p *pgQuerier) close() error {
	p.pool.Close()
	return nil
}

// store implements records.Store with the fixed statements.
type store struct{ q querier }

var _ records.Store = store{}

// date scans a DATE (PostgreSQL: time.Time) or 'YYYY-MM-DD' text (SQLite);
// NULL leaves the zero time.
type date struct{ t *time.Time }

func (d date) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*d.t = time.Time{}
	case time.Time:
		*d.t = time.Date(v.Year(), v.Month(), v.Day(), 0, 0, 0, 0, time.UTC)
	case string:
		return d.parse(v)
	case []byte:
		return d.parse(string(v))
	default:
		return fmt.Errorf("sqlsource: cannot scan %T as a date", v)
	}
	return nil
}

func (d date) parse(s string) error {
	if len(s) > len(records.DateLayout) {
		s = s[:len(records.DateLayout)]
	}
	t, err := time.Parse(records.DateLayout, s)
	if err != nil {
		return fmt.Errorf("sqlsource: bad date: %w", err)
	}
	*d.t = t
	return nil
}

func scanPerson(sc rowScanner, extra ...any) (*records.Person, error) {
	var p records.Person
	var reason sql.NullString
	dst := append(extra, &p.IDNumber, &p.Name, &p.Sex, date{&p.BirthDate}, &p.HouseholdID, &p.Relation, &reason, date{&p.CancelDate})
	if err := sc.Scan(dst...); err != nil {
		return nil, err
	}
	p.CancelReason = reason.String
	return &p, nil
}

// Person implements records.Store.
func (s store) Person(ctx context.Context, id string) (*records.Person, error) {
	var p *records.Person
	err := s.q.query(ctx, qPerson, []any{id}, func(r rowScanner) (err error) {
		p, err = scanPerson(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlsource: person: %w", err)
	}
	return p, nil
}

// Household implements records.Store.
func (s store) Household(ctx context.Context, id string) (*records.Household, []records.Person, error) {
	var h *records.Household
	var members []records.Person
	err := s.q.query(ctx, qHousehold, []any{id}, func(r rowScanner) error {
		var x records.Household
		p, err := scanPerson(r, &x.ID, &x.HeadID, &x.RegionCode)
		if err != nil {
			return err
		}
		h = &x
		members = append(members, *p)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlsource: household: %w", err)
	}
	return h, members, nil
}

// Relation implements records.Store.
func (s store) Relation(ctx context.Context, personID, relativeID string) (string, error) {
	var rel string
	err := s.q.query(ctx, qRelation, []any{personID, relativeID}, func(r rowScanner) error { return r.Scan(&rel) })
	if err != nil {
		return "", fmt.Errorf("sqlsource: kinship: %w", err)
	}
	return rel, nil
}

func list[T any](ctx context.Context, s store, q, what, id string, scan func(rowScanner, *T) error) ([]T, error) {
	var out []T
	err := s.q.query(ctx, q, []any{id}, func(r rowScanner) error {
		var x T
		if err := scan(r, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlsource: %s: %w", what, err)
	}
	return out, nil
}

// FormerNames implements records.Store.
func (s store) FormerNames(ctx context.Context, id string) ([]records.FormerName, error) {
	return list(ctx, s, qFormerNames, "former names", id, func(r rowScanner, f *records.FormerName) error {
		f.PersonID = id
		return r.Scan(&f.Seq, &f.Name, date{&f.Until})
	})
}

// Residences implements records.Store.
func (s store) Residences(ctx context.Context, id string) ([]records.Residence, error) {
	return list(ctx, s, qResidences, "residences", id, func(r rowScanner, x *records.Residence) error {
		x.PersonID = id
		return r.Scan(&x.Seq, &x.RegionCode, date{&x.From}, date{&x.To})
	})
}

// CriminalRecords implements records.Store.
func (s store) CriminalRecords(ctx context.Context, id string) ([]records.CriminalRecord, error) {
	return list(ctx, s, qCrimes, "criminal records", id, func(r rowScanner, c *records.CriminalRecord) error {
		c.PersonID = id
		return r.Scan(&c.Seq, &c.Offence, &c.Court, date{&c.JudgmentDate}, &c.Sentence)
	})
}
