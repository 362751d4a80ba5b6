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
	SentAt, AckedAt                  time.Time
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
// returns the stored one (which a caller sends).
func (s *Store) Put(ctx context.Context, agreementID, schedule, recipient string, p Period, b Batch, at time.Time) (Stored, error) {
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO exchange_batches (agreement_id, schedule, sequence, batch_id, recipient, period_from, period_to, manifest, records, count, built_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agreement_id, schedule, sequence) DO NOTHING`),
			agreementID, schedule, p.Sequence, b.ID, recipient, s.db.T(p.From), s.db.T(p.To), b.Manifest, joinRecords(b.Records), len(b.Records), s.db.T(at))
		return err
	})
	if err != nil {
		return Stored{}, fmt.Errorf("exchange: store batch: %w", err)
	}
	st, ok, err := s.Get(ctx, agreementID, schedule, p.Sequence)
	if err == nil && !ok {
		err = errors.New("exchange: the stored batch vanished")
	}
	return st, err
}

const columns = `agreement_id, schedule, sequence, batch_id, recipient, period_from, period_to, manifest, records, count, built_at, sent_at, acked_at`

func (s *Store) scan(r interface{ Scan(...any) error }) (Stored, error) {
	var st Stored
	var from, to, built sqldb.Time
	var sent, acked sql.Null[sqldb.Time]
	var recs []byte
	if err := r.Scan(&st.AgreementID, &st.Schedule, &st.Sequence, &st.ID, &st.Recipient, &from, &to, &st.Manifest, &recs, &st.Count, &built, &sent, &acked); err != nil {
		return st, err
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

// Last returns the highest stored sequence of a schedule (0: none).
func (s *Store) Last(ctx context.Context, agreementID, schedule string) (int, error) {
	var n int
	err := s.db.SQL.QueryRowContext(ctx, s.db.Q(`SELECT coalesce(max(sequence), 0) FROM exchange_batches WHERE agreement_id = ? AND schedule = ?`), agreementID, schedule).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("exchange: last batch: %w", err)
	}
	return n, nil
}

// MarkSent records that a batch was published.
func (s *Store) MarkSent(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.SQL.ExecContext(ctx, s.db.Q(`UPDATE exchange_batches SET sent_at = ? WHERE batch_id = ? AND sent_at IS NULL`), s.db.T(at), id)
	return err
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
