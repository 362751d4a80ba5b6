package feedback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certless/certless/internal/sqldb"
	"github.com/certless/certless/schemas"
)

var sqliteMigrations = []string{
	`CREATE TABLE feedback_acks (
		digest     TEXT PRIMARY KEY,
		agency     TEXT NOT NULL,
		ref_type   TEXT NOT NULL,
		ref_id     TEXT NOT NULL,
		kind       TEXT NOT NULL,
		case_ref   TEXT NOT NULL,
		at         TEXT NOT NULL
	);
	CREATE INDEX feedback_acks_ref ON feedback_acks (ref_id);
	CREATE TABLE feedback_disputes (
		id             TEXT PRIMARY KEY,
		digest         TEXT NOT NULL UNIQUE,
		agency         TEXT NOT NULL,
		message        BLOB NOT NULL,
		receipt_id     TEXT NOT NULL,
		receipt_digest TEXT NOT NULL,
		request_digest TEXT NOT NULL,
		query          TEXT NOT NULL,
		fields         TEXT NOT NULL,
		statement      TEXT NOT NULL,
		evidence_ref   TEXT NOT NULL,
		owner          TEXT NOT NULL,
		status         TEXT NOT NULL CHECK (status IN ('open', 'forwarded', 'confirmed', 'corrected', 'closed')),
		opened_at      TEXT NOT NULL,
		due            TEXT NOT NULL,
		updated_at     TEXT NOT NULL,
		resolution     TEXT NOT NULL,
		resolution_id  TEXT NOT NULL,
		resolution_digest TEXT NOT NULL
	);
	CREATE INDEX feedback_disputes_status ON feedback_disputes (status, due);
	CREATE INDEX feedback_disputes_receipt ON feedback_disputes (receipt_id);
	CREATE TABLE feedback_events (
		dispute_id TEXT NOT NULL REFERENCES feedback_disputes (id),
		seq        INTEGER NOT NULL CHECK (seq >= 1),
		status     TEXT NOT NULL,
		at         TEXT NOT NULL,
		actor      TEXT NOT NULL,
		note       TEXT NOT NULL,
		notice     BLOB,
		leaf_index INTEGER NOT NULL DEFAULT -1,
		sent_at    TEXT,
		PRIMARY KEY (dispute_id, seq)
	);
	CREATE INDEX feedback_events_unsent ON feedback_events (at) WHERE sent_at IS NULL;`,
}

var postgresMigrations = []string{
	`CREATE TABLE feedback_acks (
		digest     text PRIMARY KEY,
		agency     text NOT NULL,
		ref_type   text NOT NULL,
		ref_id     text NOT NULL,
		kind       text NOT NULL,
		case_ref   text NOT NULL,
		at         timestamptz NOT NULL
	);
	CREATE INDEX feedback_acks_ref ON feedback_acks (ref_id);
	CREATE TABLE feedback_disputes (
		id             text PRIMARY KEY,
		digest         text NOT NULL UNIQUE,
		agency         text NOT NULL,
		message        bytea NOT NULL,
		receipt_id     text NOT NULL,
		receipt_digest text NOT NULL,
		request_digest text NOT NULL,
		query          text NOT NULL,
		fields         text NOT NULL,
		statement      text NOT NULL,
		evidence_ref   text NOT NULL,
		owner          text NOT NULL,
		status         text NOT NULL CHECK (status IN ('open', 'forwarded', 'confirmed', 'corrected', 'closed')),
		opened_at      timestamptz NOT NULL,
		due            timestamptz NOT NULL,
		updated_at     timestamptz NOT NULL,
		resolution     text NOT NULL,
		resolution_id  text NOT NULL,
		resolution_digest text NOT NULL
	);
	CREATE INDEX feedback_disputes_status ON feedback_disputes (status, due);
	CREATE INDEX feedback_disputes_receipt ON feedback_disputes (receipt_id);
	CREATE TABLE feedback_events (
		dispute_id text NOT NULL REFERENCES feedback_disputes (id),
		seq        integer NOT NULL CHECK (seq >= 1),
		status     text NOT NULL,
		at         timestamptz NOT NULL,
		actor      text NOT NULL,
		note       text NOT NULL,
		notice     bytea,
		leaf_index bigint NOT NULL DEFAULT -1,
		sent_at    timestamptz,
		PRIMARY KEY (dispute_id, seq)
	);
	CREATE INDEX feedback_events_unsent ON feedback_events (at) WHERE sent_at IS NULL;`,
}

var schema = sqldb.Schema{Name: "feedback", SQLite: sqliteMigrations, Postgres: postgresMigrations, LockKey: 7236102365487124003}

// Errors of the store.
var (
	// ErrNotFound: no dispute with that id.
	ErrNotFound = errors.New("feedback: no such dispute")
	// ErrState: the dispute is not in a state the transition starts from.
	ErrState = errors.New("feedback: the dispute is not in a state that allows this")
	// ErrConflict: a dispute with this id exists with another digest (a
	// replayed id).
	ErrConflict = errors.New("feedback: the dispute id is held by another message")
)

// Dispute is one dispute of an answer.
type Dispute struct {
	ID     string `json:"id"`     // the dispute message's id
	Digest string `json:"digest"` // of the dispute message
	Agency string `json:"agency"` // the disputing agency
	// Message is the agency's signed dispute, as received: the data owner
	// verifies it.
	Message       []byte             `json:"-"`
	Receipt       schemas.MessageRef `json:"receipt"`
	RequestDigest string             `json:"request_digest"`
	Query         string             `json:"query"`
	Fields        []string           `json:"fields"`
	Statement     string             `json:"statement"`
	EvidenceRef   string             `json:"evidence_ref,omitempty"`
	// Owner is the police data owner the dispute is with.
	Owner     string    `json:"owner"`
	Status    string    `json:"status"` // schemas.Dispute*
	OpenedAt  time.Time `json:"opened_at"`
	Due       time.Time `json:"due"` // the first answer's deadline
	UpdatedAt time.Time `json:"updated_at"`
	// Resolution is the data owner's signed dispute_resolution (compact
	// JWS) once confirmed or corrected; ResolutionRef names it.
	Resolution    string             `json:"resolution,omitempty"`
	ResolutionRef schemas.MessageRef `json:"resolution_ref,omitzero"`
}

// Answered reports whether the data owner has given its answer.
func (d Dispute) Answered() bool {
	return d.Status == schemas.DisputeConfirmed || d.Status == schemas.DisputeCorrected || d.Status == schemas.DisputeClosed
}

// Overdue reports whether the first answer is late at now.
func (d Dispute) Overdue(now time.Time) bool { return !d.Answered() && now.After(d.Due) }

// Event is one step of a dispute's lifecycle.
type Event struct {
	DisputeID string    `json:"dispute_id"`
	Seq       int       `json:"seq"` // 1 for open
	Status    string    `json:"status"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Note      string    `json:"note,omitempty"`
	// Notice is the broker's signed dispute_status of the step (none for
	// open: the dispute's receipt tells the agency); LeafIndex its
	// transparency-log leaf, -1 until logged; SentAt when it was published,
	// zero until then.
	Notice    []byte    `json:"-"`
	LeafIndex int64     `json:"leaf_index"`
	SentAt    time.Time `json:"sent_at,omitzero"`
}

// Ack is one acknowledgement an agency sent.
type Ack struct {
	Digest  string // of the acknowledgement message
	Agency  string
	RefType string // receipt, dispute_resolution or batch_manifest
	RefID   string
	Kind    string // schemas.AckReceived or AckUsed
	CaseRef string
	At      time.Time
}

// Store keeps feedback in the decision store's database, in tables of its
// own (feedback_*): acknowledgements, disputes and their events. Any number
// of processes (brokers, `certless dispute`) may share it.
type Store struct {
	db *sqldb.DB
}

// Open opens (creating or migrating its tables if needed) the feedback
// tables at dsn: PostgreSQL for postgres:// DSNs, else an SQLite file.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := sqldb.Open(ctx, dsn, schema)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Migrate creates or upgrades the feedback tables (as the schema owner).
func Migrate(ctx context.Context, dsn string) error {
	s, err := Open(ctx, dsn)
	if err != nil {
		return err
	}
	return s.Close()
}

// PostgresRoleSQL grants a broker's login role what it needs of the
// feedback tables: it records acknowledgements, opens, forwards and closes
// disputes and sends their notices; it never deletes.
func PostgresRoleSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	return strings.Join([]string{
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`REVOKE ALL ON feedback_acks, feedback_disputes, feedback_events, feedback_schema_version FROM ` + r,
		`GRANT SELECT ON feedback_schema_version TO ` + r,
		`GRANT SELECT, INSERT ON feedback_acks TO ` + r,
		`GRANT SELECT, INSERT, UPDATE ON feedback_disputes, feedback_events TO ` + r,
	}, ";\n") + ";\n"
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// RecordAck stores a; the same acknowledgement again records nothing.
func (s *Store) RecordAck(ctx context.Context, a Ack) error {
	_, err := s.db.SQL.ExecContext(ctx, s.db.Q(`INSERT INTO feedback_acks (digest, agency, ref_type, ref_id, kind, case_ref, at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`),
		a.Digest, a.Agency, a.RefType, a.RefID, a.Kind, a.CaseRef, s.db.T(a.At))
	if err != nil {
		return fmt.Errorf("feedback: record acknowledgement: %w", err)
	}
	return nil
}

// Acks returns the acknowledgements of the message refID.
func (s *Store) Acks(ctx context.Context, refID string) ([]Ack, error) {
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT digest, agency, ref_type, ref_id, kind, case_ref, at FROM feedback_acks WHERE ref_id = ? ORDER BY at, digest`), refID)
	if err != nil {
		return nil, fmt.Errorf("feedback: acknowledgements: %w", err)
	}
	defer rows.Close()
	var out []Ack
	for rows.Next() {
		var a Ack
		var at sqldb.Time
		if err := rows.Scan(&a.Digest, &a.Agency, &a.RefType, &a.RefID, &a.Kind, &a.CaseRef, &at); err != nil {
			return nil, fmt.Errorf("feedback: acknowledgements: %w", err)
		}
		a.At = at.T
		out = append(out, a)
	}
	return out, rows.Err()
}

const disputeColumns = `id, digest, agency, message, receipt_id, receipt_digest, request_digest, query, fields, statement, evidence_ref,
	owner, status, opened_at, due, updated_at, resolution, resolution_id, resolution_digest`

type scanner interface{ Scan(dest ...any) error }

func scanDispute(r scanner) (Dispute, error) {
	var d Dispute
	var fields string
	var opened, due, updated sqldb.Time
	err := r.Scan(&d.ID, &d.Digest, &d.Agency, &d.Message, &d.Receipt.ID, &d.Receipt.Digest, &d.RequestDigest, &d.Query, &fields,
		&d.Statement, &d.EvidenceRef, &d.Owner, &d.Status, &opened, &due, &updated, &d.Resolution, &d.ResolutionRef.ID, &d.ResolutionRef.Digest)
	if err != nil {
		return d, err
	}
	if fields != "" {
		d.Fields = strings.Split(fields, ",")
	}
	d.OpenedAt, d.Due, d.UpdatedAt = opened.T, due.T, updated.T
	return d, nil
}

// OpenDispute stores d as open, with its first event, unless a dispute
// with d.ID exists: then it returns that one (created false), or
// ErrConflict when it holds another digest.
func (s *Store) OpenDispute(ctx context.Context, d Dispute) (stored Dispute, created bool, err error) {
	d.Status = schemas.DisputeOpen
	d.OpenedAt, d.Due = sqldb.NormTime(d.OpenedAt), sqldb.NormTime(d.Due)
	d.UpdatedAt = d.OpenedAt
	err = s.db.Write(ctx, func(tx *sql.Tx) error {
		old, err := scanDispute(tx.QueryRowContext(ctx, s.db.Q(`SELECT `+disputeColumns+` FROM feedback_disputes WHERE id = ?`), d.ID))
		switch {
		case err == nil:
			if old.Digest != d.Digest {
				return fmt.Errorf("%w: %s", ErrConflict, d.ID)
			}
			stored = old
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("feedback: open dispute: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO feedback_disputes (`+disputeColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '')`),
			d.ID, d.Digest, d.Agency, d.Message, d.Receipt.ID, d.Receipt.Digest, d.RequestDigest, d.Query, strings.Join(d.Fields, ","),
			d.Statement, d.EvidenceRef, d.Owner, d.Status, s.db.T(d.OpenedAt), s.db.T(d.Due), s.db.T(d.UpdatedAt)); err != nil {
			return fmt.Errorf("feedback: open dispute: %w", err)
		}
		// Open needs no notice: the dispute's own receipt tells the agency.
		if _, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO feedback_events (dispute_id, seq, status, at, actor, note, sent_at)
			VALUES (?, 1, ?, ?, ?, '', ?)`), d.ID, d.Status, s.db.T(d.OpenedAt), d.Agency, s.db.T(d.OpenedAt)); err != nil {
			return fmt.Errorf("feedback: open dispute: %w", err)
		}
		stored, created = d, true
		return nil
	})
	return stored, created, err
}

// Dispute returns the dispute id.
func (s *Store) Dispute(ctx context.Context, id string) (Dispute, bool, error) {
	d, err := scanDispute(s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT `+disputeColumns+` FROM feedback_disputes WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Dispute{}, false, nil
	}
	if err != nil {
		return Dispute{}, false, fmt.Errorf("feedback: dispute %s: %w", id, err)
	}
	return d, true, nil
}

// ByResolution returns the dispute a resolution (by its message id)
// answered.
func (s *Store) ByResolution(ctx context.Context, resolutionID string) (Dispute, bool, error) {
	d, err := scanDispute(s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT `+disputeColumns+` FROM feedback_disputes WHERE resolution_id = ? AND resolution_id <> ''`), resolutionID))
	if errors.Is(err, sql.ErrNoRows) {
		return Dispute{}, false, nil
	}
	if err != nil {
		return Dispute{}, false, fmt.Errorf("feedback: dispute of resolution %s: %w", resolutionID, err)
	}
	return d, true, nil
}

// Filter selects disputes for List; zero fields select all.
type Filter struct {
	Owner, Agency, Status string
	// OverdueAt keeps only the disputes whose first answer is late at
	// that time.
	OverdueAt time.Time
}

// List returns the disputes f selects, oldest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Dispute, error) {
	where, args := []string{"1 = 1"}, []any{}
	for _, c := range []struct{ col, v string }{{"owner", f.Owner}, {"agency", f.Agency}, {"status", f.Status}} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if !f.OverdueAt.IsZero() {
		where, args = append(where, "status IN ('open', 'forwarded') AND due < ?"), append(args, s.db.T(f.OverdueAt))
	}
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT `+disputeColumns+` FROM feedback_disputes WHERE `+strings.Join(where, " AND ")+` ORDER BY opened_at, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("feedback: list disputes: %w", err)
	}
	defer rows.Close()
	var out []Dispute
	for rows.Next() {
		d, err := scanDispute(rows)
		if err != nil {
			return nil, fmt.Errorf("feedback: list disputes: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Transition moves dispute id from one of from to status to, as actor, with
// a note, letting set change the dispute (the resolution) in the same
// transaction, and records the step's event (its notice to be signed and
// sent). A dispute already in to records nothing and returns the zero
// Event with no error: transitions are idempotent.
func (s *Store) Transition(ctx context.Context, id string, from []string, to, actor, note string, at time.Time, set func(*Dispute)) (Event, error) {
	var ev Event
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		d, err := scanDispute(tx.QueryRowContext(ctx, s.db.Q(`SELECT `+disputeColumns+` FROM feedback_disputes WHERE id = ?`), id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("feedback: transition: %w", err)
		}
		if d.Status == to {
			return nil
		}
		if !slices.Contains(from, d.Status) {
			return fmt.Errorf("%w: dispute %s is %s, not %s", ErrState, id, d.Status, strings.Join(from, " or "))
		}
		if set != nil {
			set(&d)
		}
		at = sqldb.NormTime(at)
		if _, err := tx.ExecContext(ctx, s.db.Q(`UPDATE feedback_disputes SET status = ?, updated_at = ?, resolution = ?, resolution_id = ?, resolution_digest = ? WHERE id = ?`),
			to, s.db.T(at), d.Resolution, d.ResolutionRef.ID, d.ResolutionRef.Digest, id); err != nil {
			return fmt.Errorf("feedback: transition: %w", err)
		}
		var seq int
		if err := tx.QueryRowContext(ctx, s.db.Q(`SELECT coalesce(max(seq), 0) + 1 FROM feedback_events WHERE dispute_id = ?`), id).Scan(&seq); err != nil {
			return fmt.Errorf("feedback: transition: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO feedback_events (dispute_id, seq, status, at, actor, note) VALUES (?, ?, ?, ?, ?, ?)`),
			id, seq, to, s.db.T(at), actor, note); err != nil {
			return fmt.Errorf("feedback: transition: %w", err)
		}
		ev = Event{DisputeID: id, Seq: seq, Status: to, At: at, Actor: actor, Note: note, LeafIndex: -1}
		return nil
	})
	return ev, err
}

const eventColumns = `dispute_id, seq, status, at, actor, note, notice, leaf_index, sent_at`

func scanEvent(r scanner) (Event, error) {
	var e Event
	var at sqldb.Time
	var sent sql.Null[sqldb.Time]
	if err := r.Scan(&e.DisputeID, &e.Seq, &e.Status, &at, &e.Actor, &e.Note, &e.Notice, &e.LeafIndex, &sent); err != nil {
		return e, err
	}
	e.At = at.T
	if sent.Valid {
		e.SentAt = sent.V.T
	}
	return e, nil
}

func (s *Store) events(ctx context.Context, where string, args ...any) ([]Event, error) {
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT `+eventColumns+` FROM feedback_events WHERE `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("feedback: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("feedback: events: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Events returns the steps of dispute id, in order.
func (s *Store) Events(ctx context.Context, id string) ([]Event, error) {
	return s.events(ctx, `dispute_id = ? ORDER BY seq`, id)
}

// Unsent returns up to limit events whose notice is not published yet,
// oldest first.
func (s *Store) Unsent(ctx context.Context, limit int) ([]Event, error) {
	return s.events(ctx, `sent_at IS NULL ORDER BY at, dispute_id, seq LIMIT ?`, limit)
}

// SetNotice records the signed notice of an event and its leaf index;
// a notice already set is kept (the first signed is the one sent).
func (s *Store) SetNotice(ctx context.Context, id string, seq int, notice []byte, leafIndex int64) error {
	_, err := s.db.SQL.ExecContext(ctx, s.db.Q(`UPDATE feedback_events SET notice = ?, leaf_index = ? WHERE dispute_id = ? AND seq = ? AND notice IS NULL`),
		notice, leafIndex, id, seq)
	if err != nil {
		return fmt.Errorf("feedback: set notice: %w", err)
	}
	return nil
}

// MarkSent records that an event's notice was published.
func (s *Store) MarkSent(ctx context.Context, id string, seq int, at time.Time) error {
	_, err := s.db.SQL.ExecContext(ctx, s.db.Q(`UPDATE feedback_events SET sent_at = ? WHERE dispute_id = ? AND seq = ? AND sent_at IS NULL`),
		s.db.T(at), id, seq)
	if err != nil {
		return fmt.Errorf("feedback: mark sent: %w", err)
	}
	return nil
}

// Counts returns the disputes by status, and those overdue at now by
// owner.
func (s *Store) Counts(ctx context.Context, now time.Time) (byStatus, overdue map[string]int, err error) {
	byStatus, overdue = map[string]int{}, map[string]int{}
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT status, owner, CASE WHEN status IN ('open', 'forwarded') AND due < ? THEN 1 ELSE 0 END, count(*)
		FROM feedback_disputes GROUP BY 1, 2, 3`), s.db.T(now))
	if err != nil {
		return nil, nil, fmt.Errorf("feedback: counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status, owner string
		var late, n int
		if err := rows.Scan(&status, &owner, &late, &n); err != nil {
			return nil, nil, fmt.Errorf("feedback: counts: %w", err)
		}
		byStatus[status] += n
		if late == 1 {
			overdue[owner] += n
		}
	}
	return byStatus, overdue, rows.Err()
}
