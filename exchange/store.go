package exchange

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/sqldb"
)

func envelopeDigest(b []byte) string { return envelope.DigestOf(b) }

var schema = sqldb.Schema{Name: "exchange", LockKey: 7236102365487124004,
	SQLite: []string{`CREATE TABLE exchange_batches (
		agreement_id TEXT NOT NULL,
		schedule     TEXT NOT NULL,
		sequence     INTEGER NOT NULL CHECK (sequence >= 1),
		batch_id     TEXT NOT NULL UNIQUE,
		recipient    TEXT NOT NULL,
		period_from  TEXT NOT NULL,
		period_to    TEXT NOT NULL,
		manifest     BLOB NOT NULL,
		records      BLOB NOT NULL,
		count        INTEGER NOT NULL,
		built_at     TEXT NOT NULL,
		sent_at      TEXT,
		acked_at     TEXT,
		PRIMARY KEY (agreement_id, schedule, sequence)
	);`,
		`ALTER TABLE exchange_batches ADD COLUMN offers INTEGER NOT NULL DEFAULT 0;
		ALTER TABLE exchange_batches ADD COLUMN offered_at TEXT;`,
		`CREATE TABLE exchange_watermarks (
		agreement_id TEXT NOT NULL,
		schedule     TEXT NOT NULL,
		sequence     INTEGER NOT NULL CHECK (sequence >= 0),
		PRIMARY KEY (agreement_id, schedule)
	);`},
	Postgres: []string{`CREATE TABLE exchange_batches (
		agreement_id text NOT NULL,
		schedule     text NOT NULL,
		sequence     integer NOT NULL CHECK (sequence >= 1),
		batch_id     text NOT NULL UNIQUE,
		recipient    text NOT NULL,
		period_from  timestamptz NOT NULL,
		period_to    timestamptz NOT NULL,
		manifest     bytea NOT NULL,
		records      bytea NOT NULL,
		count        integer NOT NULL,
		built_at     timestamptz NOT NULL,
		sent_at      timestamptz,
		acked_at     timestamptz,
		PRIMARY KEY (agreement_id, schedule, sequence)
	);`,
		`ALTER TABLE exchange_batches ADD COLUMN offers integer NOT NULL DEFAULT 0;
		ALTER TABLE exchange_batches ADD COLUMN offered_at timestamptz;`,
		`CREATE TABLE exchange_watermarks (
		agreement_id text NOT NULL,
		schedule     text NOT NULL,
		sequence     integer NOT NULL CHECK (sequence >= 0),
		PRIMARY KEY (agreement_id, schedule)
	);`},
}

// Store keeps every batch built, in the decision store's database: the
// first batch of a period is the batch of that period, whoever built it,
// and a re-run or another broker sends those bytes.
type Store struct{ db *sqldb.DB }

// Open opens (creating if needed) the batch table at dsn.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := sqldb.Open(ctx, dsn, schema)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Stored is a batch as stored.
type Stored struct {
	Batch
	AgreementID, Schedule, Recipient string
	Sequence, Count                  int
	From, To, BuiltAt                time.Time
	// SentAt is when it was first published, OfferedAt the last time;
	// Offers counts the publications.
	SentAt, AckedAt, OfferedAt time.Time
	Offers                     int
}

// records are stored as one blob: each record's length-prefixed bytes.
func joinRecords(rs [][]byte) []byte {
	b := bytes.NewBuffer([]byte{}) // never nil: the column is NOT NULL
	for _, r := range rs {
		fmt.Fprintf(b, "%d\n", len(r))
		b.Write(r)
	}
	return b.Bytes()
}

func splitRecords(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var n int
		if i < 0 || func() bool { _, err := fmt.Sscanf(string(b[:i]), "%d", &n); return err != nil }() || n < 0 || n > len(b)-i-1 {
			return nil, errors.New("exchange: stored records are corrupt")
		}
		out = append(out, b[i+1:i+1+n])
		b = b[i+1+n:]
	}
	return out, nil
}

// Put stores b as the batch of its period unless one is stored, and
// returns the stored one (which a caller sends) and whether it is b.
func (s *Store) Put(ctx context.Context, agreementID, schedule, recipient string, p Period, b Batch, at time.Time) (Stored, bool, error) {
	var inserted bool
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO exchange_batches (agreement_id, schedule, sequence, batch_id, recipient, period_from, period_to, manifest, records, count, built_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agreement_id, schedule, sequence) DO NOTHING`),
			agreementID, schedule, p.Sequence, b.ID, recipient, s.db.T(p.From), s.db.T(p.To), b.Manifest, joinRecords(b.Records), len(b.Records), s.db.T(at))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		inserted = n == 1
		return err
	})
	if err != nil {
		return Stored{}, false, fmt.Errorf("exchange: store batch: %w", err)
	}
	st, ok, err := s.Get(ctx, agreementID, schedule, p.Sequence)
	if err == nil && !ok {
		err = errors.New("exchange: the stored batch vanished")
	}
	return st, inserted, err
}

const columns = `agreement_id, schedule, sequence, batch_id, recipient, period_from, period_to, manifest, records, count, built_at, sent_at, acked_at, offered_at, offers`

func (s *Store) scan(r interface{ Scan(...any) error }) (Stored, error) {
	var st Stored
	var from, to, built sqldb.Time
	var sent, acked, offered sql.Null[sqldb.Time]
	var recs []byte
	if err := r.Scan(&st.AgreementID, &st.Schedule, &st.Sequence, &st.ID, &st.Recipient, &from, &to, &st.Manifest, &recs, &st.Count, &built, &sent, &acked, &offered, &st.Offers); err != nil {
		return st, err
	}
	if offered.Valid {
		st.OfferedAt = offered.V.T
	}
	st.From, st.To, st.BuiltAt = from.T, to.T, built.T
	if sent.Valid {
		st.SentAt = sent.V.T
	}
	if acked.Valid {
		st.AckedAt = acked.V.T
	}
	var err error
	st.Records, err = splitRecords(recs)
	return st, err
}

// Get returns the stored batch of a schedule's period.
func (s *Store) Get(ctx context.Context, agreementID, schedule string, sequence int) (Stored, bool, error) {
	st, err := s.scan(s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT `+columns+` FROM exchange_batches WHERE agreement_id = ? AND schedule = ? AND sequence = ?`), agreementID, schedule, sequence))
	if errors.Is(err, sql.ErrNoRows) {
		return Stored{}, false, nil
	}
	if err != nil {
		return Stored{}, false, fmt.Errorf("exchange: batch: %w", err)
	}
	return st, true, nil
}

// ByID returns the stored batch id.
func (s *Store) ByID(ctx context.Context, id string) (Stored, bool, error) {
	st, err := s.scan(s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT `+columns+` FROM exchange_batches WHERE batch_id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Stored{}, false, nil
	}
	if err != nil {
		return Stored{}, false, fmt.Errorf("exchange: batch %s: %w", id, err)
	}
	return st, true, nil
}

// Watermark is the scheduler's progress through a schedule: every period
// up to sequence is built (ok false: the scheduler never ran it). An
// operator's run of one period does not move it.
func (s *Store) Watermark(ctx context.Context, agreementID, schedule string) (sequence int, ok bool, err error) {
	err = s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT sequence FROM exchange_watermarks WHERE agreement_id = ? AND schedule = ?`), agreementID, schedule).Scan(&sequence)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("exchange: watermark: %w", err)
	}
	return sequence, true, nil
}

// Advance moves a schedule's watermark up to sequence (never down: two
// brokers advancing it race harmlessly).
func (s *Store) Advance(ctx context.Context, agreementID, schedule string, sequence int) error {
	_, err := s.db.SQL.ExecContext(ctx, s.db.Q(`INSERT INTO exchange_watermarks (agreement_id, schedule, sequence) VALUES (?, ?, ?)
		ON CONFLICT (agreement_id, schedule) DO UPDATE SET sequence = excluded.sequence WHERE exchange_watermarks.sequence < excluded.sequence`),
		agreementID, schedule, sequence)
	if err != nil {
		return fmt.Errorf("exchange: advance watermark: %w", err)
	}
	return nil
}

// Last returns the highest stored sequence of a schedule (0: none).
func (s *Store) Last(ctx context.Context, agreementID, schedule string) (int, error) {
	var n int
	err := s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT coalesce(max(sequence), 0) FROM exchange_batches WHERE agreement_id = ? AND schedule = ?`), agreementID, schedule).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("exchange: last batch: %w", err)
	}
	return n, nil
}

// Offer publishes batch id through publish, once across the brokers
// sharing the database, and records the offer. On PostgreSQL the batch's
// row stays locked while publish runs (SELECT … FOR UPDATE SKIP LOCKED):
// another broker offering the same batch at that moment skips it
// (offered false), and a broker that dies mid-publish releases the lock
// with its connection, so a restart offers it again at once. Publish sees
// the batch as stored. The lock is the row's alone: acknowledging other
// batches, or building new ones, never waits for a publish.
//
// when decides, given the stored batch, whether it is still to be offered
// (another broker may have offered it since the caller looked).
func (s *Store) Offer(ctx context.Context, id string, at time.Time, when func(Stored) bool, publish func(context.Context, Stored) error) (offered bool, err error) {
	if !s.db.PG {
		return s.offerSQLite(ctx, id, at, when, publish)
	}
	tx, err := s.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("exchange: offer %s: %w", id, err)
	}
	defer func() {
		if !offered {
			_ = tx.Rollback()
		}
	}()
	st, err := s.scan(tx.QueryRowContext(ctx, s.db.Q(`SELECT `+columns+` FROM exchange_batches WHERE batch_id = ? FOR UPDATE SKIP LOCKED`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // another broker is publishing it
	}
	if err != nil {
		return false, fmt.Errorf("exchange: offer %s: %w", id, err)
	}
	if !when(st) {
		return false, nil
	}
	if err := publish(ctx, st); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, s.db.Q(offeredSQL), s.db.T(at), s.db.T(at), id); err != nil {
		return false, fmt.Errorf("exchange: offer %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("exchange: offer %s: %w", id, err)
	}
	return true, nil
}

const offeredSQL = `UPDATE exchange_batches SET sent_at = coalesce(sent_at, ?), offered_at = ?, offers = offers + 1 WHERE batch_id = ?`

// offerSQLite is Offer on SQLite, whose only lock is the whole database's:
// holding it while publishing would stall the decision store's writes, so
// the batch is read, published and marked in three steps. SQLite serves
// one broker (certless dev); two brokers on one SQLite file could publish
// a batch twice — the same bytes, which a receiver ignores.
func (s *Store) offerSQLite(ctx context.Context, id string, at time.Time, when func(Stored) bool, publish func(context.Context, Stored) error) (bool, error) {
	st, ok, err := s.ByID(ctx, id)
	if err != nil || !ok || !when(st) {
		return false, err
	}
	if err := publish(ctx, st); err != nil {
		return false, err
	}
	if _, err := s.db.SQL.ExecContext(ctx, s.db.Q(offeredSQL), s.db.T(at), s.db.T(at), id); err != nil {
		return false, fmt.Errorf("exchange: offer %s: %w", id, err)
	}
	return true, nil
}

// Due lists, in sequence order per schedule, the ids of the batches to
// offer at now: never published, or published and unacknowledged since
// before now-deadline.
func (s *Store) Due(ctx context.Context, now time.Time, deadline time.Duration) ([]DueBatch, error) {
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT batch_id, agreement_id, schedule FROM exchange_batches
		WHERE sent_at IS NULL OR (acked_at IS NULL AND offered_at < ?)
		ORDER BY agreement_id, schedule, sequence`), s.db.T(now.Add(-deadline)))
	if err != nil {
		return nil, fmt.Errorf("exchange: due batches: %w", err)
	}
	defer rows.Close()
	var out []DueBatch
	for rows.Next() {
		var d DueBatch
		var a, sch string
		if err := rows.Scan(&d.ID, &a, &sch); err != nil {
			return nil, err
		}
		d.Job = a + "/" + sch
		out = append(out, d)
	}
	return out, rows.Err()
}

// DueBatch is a batch to offer: its id and its job's key.
type DueBatch struct{ ID, Job string }

// Summary is one schedule's state in the store.
type Summary struct {
	AgreementID, Schedule, Recipient string
	// Last is the highest sequence built, LastSent and LastAcked the
	// highest published and acknowledged.
	Last, LastSent, LastAcked int
	// Unsent are built but never published; Unacknowledged published and
	// not acknowledged, Overdue the part of those first sent before the
	// deadline's cutoff.
	Unsent, Unacknowledged, Overdue int
	// OldestOverdue is the sequence of the oldest overdue batch (0: none).
	OldestOverdue int
	// Offers counts every publication of the schedule's batches.
	Offers int
}

// Summaries returns each schedule's state, the cutoff of the overdue
// count being now minus deadline.
func (s *Store) Summaries(ctx context.Context, now time.Time, deadline time.Duration) ([]Summary, error) {
	cut := s.db.T(now.Add(-deadline))
	rows, err := s.db.SQL.QueryContext(ctx, s.db.Q(`SELECT agreement_id, schedule, max(recipient), max(sequence),
			coalesce(max(CASE WHEN sent_at IS NOT NULL THEN sequence END), 0),
			coalesce(max(CASE WHEN acked_at IS NOT NULL THEN sequence END), 0),
			sum(CASE WHEN sent_at IS NULL THEN 1 ELSE 0 END),
			sum(CASE WHEN sent_at IS NOT NULL AND acked_at IS NULL THEN 1 ELSE 0 END),
			sum(CASE WHEN sent_at IS NOT NULL AND acked_at IS NULL AND sent_at < ? THEN 1 ELSE 0 END),
			coalesce(min(CASE WHEN sent_at IS NOT NULL AND acked_at IS NULL AND sent_at < ? THEN sequence END), 0),
			sum(offers)
		FROM exchange_batches GROUP BY agreement_id, schedule ORDER BY agreement_id, schedule`), cut, cut)
	if err != nil {
		return nil, fmt.Errorf("exchange: summaries: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		var m Summary
		if err := rows.Scan(&m.AgreementID, &m.Schedule, &m.Recipient, &m.Last, &m.LastSent, &m.LastAcked,
			&m.Unsent, &m.Unacknowledged, &m.Overdue, &m.OldestOverdue, &m.Offers); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Ack records agency's acknowledgement of batch id (the manifest's message
// id) whose manifest has digest: found false when no batch has that id, an
// error wrapping ErrNotRecipient or ErrDigest when it is not agency's or
// not that manifest. Acknowledging again keeps the first time.
func (s *Store) Ack(ctx context.Context, id, digest, agency string, at time.Time) (bool, error) {
	b, ok, err := s.ByID(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	switch {
	case b.Recipient != agency:
		return true, fmt.Errorf("%w: batch %s goes to %s", ErrNotRecipient, id, b.Recipient)
	case envelopeDigest(b.Manifest) != digest:
		return true, fmt.Errorf("%w: batch %s", ErrDigest, id)
	}
	_, err = s.db.SQL.ExecContext(ctx, s.db.Q(`UPDATE exchange_batches SET acked_at = ? WHERE batch_id = ? AND acked_at IS NULL`), s.db.T(at), id)
	if err != nil {
		return true, fmt.Errorf("exchange: acknowledge: %w", err)
	}
	return true, nil
}

// Errors of Ack.
var (
	ErrNotRecipient = errors.New("exchange: the batch was not sent to this agency")
	ErrDigest       = errors.New("exchange: the digest is not the batch manifest's")
)
