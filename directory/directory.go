// Package directory is the docking directory: the agencies that may ask the
// broker, and the record sources it may read, each at a level and GB/T 2260
// region, with the agency's signing keys and optional encryption key. It
// lives in the decision store's database (PostgreSQL or SQLite, selected by
// the same DSN as broker/store), in tables of its own with their own schema
// version (directory_schema_version), and is shared by the broker and the
// operators' tools.
//
// The directory promises:
//
//   - Validated entries: an id is ^[a-z0-9][a-z0-9-]{1,62}$, a level is
//     province, prefecture or county and is the level of the region's code
//     in adapters/regions, a kind is one of Kinds (or SourceKinds), every
//     key of an agency's JWKS parses (keys.ParseJWKS), is a signing key and
//     has a kid naming the agency, and its optional encryption key is one
//     ECDH-ES+A256KW public JWK naming the agency. A refused entry is an
//     error wrapping ErrInvalid that says what to fix.
//   - Idempotent docking: docking content that is already docked records
//     nothing and returns a zero Change; docking different content records
//     "updated". Every change bumps the entry's Version.
//   - One history: every change is a row of directory_changes, numbered
//     without gaps (seq 1, 2, ...) in commit order, with the entry before and
//     after it in canonical JSON and the digest of the after; rows are only
//     ever inserted. Version returns the newest seq, so a broker can poll for
//     changes with one cheap query.
//   - A leaf per change: each change is appended to the transparency log
//     (Leaves) under key "directory:<seq>" as a translog leaf of kind
//     "agency" or "record_source", with the id, the change as its reason and
//     the change's digest as its subject; never a name or a contact. The log
//     lives in broker/store's tables, outside the directory's transaction:
//     the append happens right after the commit. If it fails (or the
//     process dies first), the change is committed but unlogged: the method
//     returns its Change with an error wrapping ErrNotLogged, and the next
//     change, FlushLeaves or Open appends every leaf still missing, in seq
//     order. A change is therefore logged at least once and at most once
//     (the log dedupes by key), but may be logged late; directory_change_leaves
//     records each change's leaf index once it is.
//
// Open selects PostgreSQL for "postgres://" and "postgresql://" DSNs and
// SQLite (modernc.org/sqlite) for anything else, as store.Open does.
package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/certless/certless/internal/sqldb"
	"github.com/certless/certless/translog"
)

// Leaves is the transparency log as the directory uses it; store.Store is
// one.
type Leaves interface {
	// AppendLeaf appends leaf under a unique key and returns its index; a
	// key already logged returns the index it holds.
	AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
}

// ErrNotLogged is wrapped by the error of a change that was committed but
// whose leaf could not be appended yet; it will be, by the next change,
// FlushLeaves or Open.
var ErrNotLogged = errors.New("directory: change committed, its log leaf is not appended yet")

// Change is one recorded change of the directory.
type Change struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Entity string    `json:"entity"` // EntityAgency or EntitySource
	ID     string    `json:"id"`     // the agency id or the source name
	Change string    `json:"change"` // Docked, Updated, SuspendedC, Resumed, KeyRotated or Imported
	Note   string    `json:"note,omitempty"`
	// Before and After are the entry in canonical JSON; Before is nil for
	// a new entry.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after"`
	Digest string          `json:"digest"` // translog.Digest(After)
	// LeafIndex is the index of the change's leaf; -1 while unlogged.
	LeafIndex int64 `json:"leaf_index"`
}

// None reports whether c is the zero Change: nothing was recorded.
func (c Change) None() bool { return c.Seq == 0 }

// Leaf is the change's transparency-log leaf.
func (c Change) Leaf() ([]byte, error) {
	return translog.Leaf{
		Kind: c.Entity, Time: translog.FormatTime(c.At), Agency: translog.Token(c.ID),
		Reason: c.Change, Subject: c.Digest,
	}.Marshal()
}

// LeafKey is the key the change's leaf is logged under.
func (c Change) LeafKey() string { return fmt.Sprintf("directory:%d", c.Seq) }

// Directory is the docking directory on one database. It is safe for
// concurrent use, and any number of Directories (processes) may share a
// database.
type Directory struct {
	db  *sqldb.DB
	log Leaves
	now func() time.Time

	flushMu sync.Mutex
}

// Open opens (creating or migrating its tables if needed) the directory in
// the database at dsn, and appends to log the leaves of changes not logged
// yet. log may be nil for a tool that only reads; changes made without a
// log are logged by the next Open with one.
func Open(ctx context.Context, dsn string, log Leaves) (*Directory, error) {
	d, err := openDB(ctx, dsn)
	if err != nil {
		return nil, err
	}
	dir := &Directory{db: d, log: log, now: time.Now}
	if err := dir.FlushLeaves(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return dir, nil
}

// Close closes the database.
func (d *Directory) Close() error { return d.db.SQL.Close() }

// SetClock replaces the clock (for tests).
func (d *Directory) SetClock(now func() time.Time) { d.now = now }

// Version is the seq of the newest change, 0 for an empty history: it grows
// with every change, so a poller compares it with the last it saw.
func (d *Directory) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := d.db.SQL.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM directory_changes`).Scan(&v); err != nil {
		return 0, fmt.Errorf("directory: version: %w", err)
	}
	return v, nil
}

const agencyColumns = `id, level, region, name, kind, contact, jwks, encryption_jwk, status, docked_by, docked_at, updated_at, version`

type scanner interface{ Scan(dest ...any) error }

func scanAgency(r scanner) (Agency, error) {
	var a Agency
	var jwks string
	var enc sql.NullString
	var docked, updated sqldb.Time
	if err := r.Scan(&a.ID, &a.Level, &a.Region, &a.Name, &a.Kind, &a.Contact, &jwks, &enc, &a.Status, &a.DockedBy, &docked, &updated, &a.Version); err != nil {
		return a, err
	}
	a.JWKS = json.RawMessage(jwks)
	if enc.Valid {
		a.EncryptionKey = json.RawMessage(enc.String)
	}
	a.DockedAt, a.UpdatedAt = docked.T, updated.T
	return a, nil
}

// Get returns the agency id.
func (d *Directory) Get(ctx context.Context, id string) (Agency, bool, error) {
	a, err := scanAgency(d.db.SQL.QueryRowContext(ctx, d.db.Q(`SELECT `+agencyColumns+` FROM directory_agencies WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Agency{}, false, nil
	}
	if err != nil {
		return Agency{}, false, fmt.Errorf("directory: get %s: %w", id, err)
	}
	return a, true, nil
}

// List returns every agency, by id.
func (d *Directory) List(ctx context.Context) ([]Agency, error) {
	rows, err := d.db.SQL.QueryContext(ctx, `SELECT `+agencyColumns+` FROM directory_agencies ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("directory: list: %w", err)
	}
	defer rows.Close()
	var out []Agency
	for rows.Next() {
		a, err := scanAgency(rows)
		if err != nil {
			return nil, fmt.Errorf("directory: list: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

const sourceColumns = `name, level, region, kind, description, status, docked_by, docked_at, updated_at, version`

func scanSource(r scanner) (Source, error) {
	var s Source
	var docked, updated sqldb.Time
	if err := r.Scan(&s.Name, &s.Level, &s.Region, &s.Kind, &s.Description, &s.Status, &s.DockedBy, &docked, &updated, &s.Version); err != nil {
		return s, err
	}
	s.DockedAt, s.UpdatedAt = docked.T, updated.T
	return s, nil
}

// GetSource returns the record source name.
func (d *Directory) GetSource(ctx context.Context, name string) (Source, bool, error) {
	s, err := scanSource(d.db.SQL.QueryRowContext(ctx, d.db.Q(`SELECT `+sourceColumns+` FROM directory_sources WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return Source{}, false, nil
	}
	if err != nil {
		return Source{}, false, fmt.Errorf("directory: get source %s: %w", name, err)
	}
	return s, true, nil
}

// ListSources returns every record source, by name.
func (d *Directory) ListSources(ctx context.Context) ([]Source, error) {
	rows, err := d.db.SQL.QueryContext(ctx, `SELECT `+sourceColumns+` FROM directory_sources ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("directory: list sources: %w", err)
	}
	defer rows.Close()
	var out []Source
	for rows.Next() {
		s, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("directory: list sources: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const changeColumns = `c.seq, c.at, c.actor, c.entity, c.id, c.change, c.note, c.before_json, c.after_json, c.digest, coalesce(l.leaf_index, -1)`

func scanChange(r scanner) (Change, error) {
	var c Change
	var at sqldb.Time
	var before sql.NullString
	var after string
	if err := r.Scan(&c.Seq, &at, &c.Actor, &c.Entity, &c.ID, &c.Change, &c.Note, &before, &after, &c.Digest, &c.LeafIndex); err != nil {
		return c, err
	}
	c.At = at.T
	if before.Valid {
		c.Before = json.RawMessage(before.String)
	}
	c.After = json.RawMessage(after)
	return c, nil
}

// Changes returns the changes after seq since, oldest first.
func (d *Directory) Changes(ctx context.Context, since int64) ([]Change, error) {
	return d.changes(ctx, `c.seq > ?`, since)
}

func (d *Directory) changes(ctx context.Context, where string, arg any) ([]Change, error) {
	rows, err := d.db.SQL.QueryContext(ctx, d.db.Q(`SELECT `+changeColumns+` FROM directory_changes c
		LEFT JOIN directory_change_leaves l ON l.seq = c.seq WHERE `+where+` ORDER BY c.seq`), arg)
	if err != nil {
		return nil, fmt.Errorf("directory: changes: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, fmt.Errorf("directory: changes: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// FlushLeaves appends the leaves of every change that has none yet, oldest
// first, and records their indexes. Without a log it does nothing.
func (d *Directory) FlushLeaves(ctx context.Context) error {
	if d.log == nil {
		return nil
	}
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	unlogged, err := d.changes(ctx, `l.seq IS NULL AND c.seq > ?`, 0)
	if err != nil {
		return err
	}
	for _, c := range unlogged {
		leaf, err := c.Leaf()
		if err != nil {
			return fmt.Errorf("directory: leaf of change %d: %w", c.Seq, err)
		}
		idx, err := d.log.AppendLeaf(ctx, c.LeafKey(), leaf)
		if err != nil {
			return fmt.Errorf("%w: change %d: %v", ErrNotLogged, c.Seq, err)
		}
		conflict := ` ON CONFLICT (seq) DO NOTHING`
		if _, err := d.db.SQL.ExecContext(ctx, d.db.Q(`INSERT INTO directory_change_leaves (seq, leaf_index) VALUES (?, ?)`+conflict), c.Seq, idx); err != nil {
			return fmt.Errorf("%w: change %d: record leaf index: %v", ErrNotLogged, c.Seq, err)
		}
	}
	return nil
}

// pending is a change being recorded in a write transaction.
type pending struct {
	entity, id, change, note string
	before, after            any // the entry; before nil for a new one
}

// record inserts the changes in tx, numbered after the newest, and returns
// them.
func (d *Directory) record(ctx context.Context, tx *sql.Tx, actor string, at time.Time, ps []pending) ([]Change, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM directory_changes`).Scan(&seq); err != nil {
		return nil, fmt.Errorf("directory: next seq: %w", err)
	}
	out := make([]Change, 0, len(ps))
	for _, p := range ps {
		seq++
		c := Change{Seq: seq, At: normTime(at), Actor: actor, Entity: p.entity, ID: p.id, Change: p.change, Note: p.note, LeafIndex: -1}
		var err error
		if p.before != nil {
			if c.Before, err = canonical(p.before); err != nil {
				return nil, err
			}
		}
		if c.After, err = canonical(p.after); err != nil {
			return nil, err
		}
		c.Digest = translog.Digest(c.After)
		var before any
		if c.Before != nil {
			before = string(c.Before)
		}
		if _, err := tx.ExecContext(ctx, d.db.Q(`INSERT INTO directory_changes (seq, at, actor, entity, id, change, note, before_json, after_json, digest)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			c.Seq, d.db.T(c.At), c.Actor, c.Entity, c.ID, c.Change, c.Note, before, string(c.After), c.Digest); err != nil {
			return nil, fmt.Errorf("directory: record change: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// logged appends the leaves of freshly committed changes (and any older
// unlogged ones) and returns cs with their indexes.
func (d *Directory) logged(ctx context.Context, cs []Change) ([]Change, error) {
	if len(cs) == 0 || d.log == nil {
		return cs, nil
	}
	err := d.FlushLeaves(ctx)
	for i := range cs {
		var idx sql.NullInt64
		if e := d.db.SQL.QueryRowContext(ctx, d.db.Q(`SELECT leaf_index FROM directory_change_leaves WHERE seq = ?`), cs[i].Seq).Scan(&idx); e == nil && idx.Valid {
			cs[i].LeafIndex = idx.Int64
		}
	}
	return cs, err
}

func (d *Directory) getTx(ctx context.Context, tx *sql.Tx, id string) (Agency, bool, error) {
	a, err := scanAgency(tx.QueryRowContext(ctx, d.db.Q(`SELECT `+agencyColumns+` FROM directory_agencies WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Agency{}, false, nil
	}
	if err != nil {
		return Agency{}, false, fmt.Errorf("directory: get %s: %w", id, err)
	}
	return a, true, nil
}

func (d *Directory) getSourceTx(ctx context.Context, tx *sql.Tx, name string) (Source, bool, error) {
	s, err := scanSource(tx.QueryRowContext(ctx, d.db.Q(`SELECT `+sourceColumns+` FROM directory_sources WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return Source{}, false, nil
	}
	if err != nil {
		return Source{}, false, fmt.Errorf("directory: get source %s: %w", name, err)
	}
	return s, true, nil
}

func (d *Directory) putAgency(ctx context.Context, tx *sql.Tx, a Agency, exists bool) error {
	var enc any
	if a.EncryptionKey != nil {
		enc = string(a.EncryptionKey)
	}
	args := []any{a.Level, a.Region, a.Name, a.Kind, a.Contact, string(a.JWKS), enc, a.Status, a.DockedBy, d.db.T(a.DockedAt), d.db.T(a.UpdatedAt), a.Version, a.ID}
	q := `UPDATE directory_agencies SET level = ?, region = ?, name = ?, kind = ?, contact = ?, jwks = ?, encryption_jwk = ?,
		status = ?, docked_by = ?, docked_at = ?, updated_at = ?, version = ? WHERE id = ?`
	if !exists {
		q = `INSERT INTO directory_agencies (level, region, name, kind, contact, jwks, encryption_jwk, status, docked_by, docked_at, updated_at, version, id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	}
	if _, err := tx.ExecContext(ctx, d.db.Q(q), args...); err != nil {
		return fmt.Errorf("directory: store agency %s: %w", a.ID, err)
	}
	return nil
}

func (d *Directory) putSource(ctx context.Context, tx *sql.Tx, s Source, exists bool) error {
	args := []any{s.Level, s.Region, s.Kind, s.Description, s.Status, s.DockedBy, d.db.T(s.DockedAt), d.db.T(s.UpdatedAt), s.Version, s.Name}
	q := `UPDATE directory_sources SET level = ?, region = ?, kind = ?, description = ?, status = ?, docked_by = ?, docked_at = ?,
		updated_at = ?, version = ? WHERE name = ?`
	if !exists {
		q = `INSERT INTO directory_sources (level, region, kind, description, status, docked_by, docked_at, updated_at, version, name)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	}
	if _, err := tx.ExecContext(ctx, d.db.Q(q), args...); err != nil {
		return fmt.Errorf("directory: store record source %s: %w", s.Name, err)
	}
	return nil
}

// one runs a write that records at most one change and logs it.
func (d *Directory) one(ctx context.Context, actor string, fn func(tx *sql.Tx, at time.Time) (*pending, error)) (Change, error) {
	if err := checkActor(actor); err != nil {
		return Change{}, err
	}
	var cs []Change
	err := d.db.Write(ctx, func(tx *sql.Tx) error {
		at := normTime(d.now())
		p, err := fn(tx, at)
		if err != nil || p == nil {
			return err
		}
		cs, err = d.record(ctx, tx, actor, at, []pending{*p})
		return err
	})
	if err != nil || len(cs) == 0 {
		return Change{}, err
	}
	cs, err = d.logged(ctx, cs)
	return cs[0], err
}

// Dock docks agency a (its ID, Level, Region, Name, Kind, Contact, JWKS and
// EncryptionKey; the rest is the directory's) as actor. A new agency is
// docked active at version 1 ("docked"); an agency docked with the same
// content records nothing and returns a zero Change; different content
// replaces it, status kept, at the next version ("updated").
func (d *Directory) Dock(ctx context.Context, a Agency, actor string) (Change, error) {
	a, err := normaliseAgency(a)
	if err != nil {
		return Change{}, err
	}
	return d.one(ctx, actor, func(tx *sql.Tx, at time.Time) (*pending, error) {
		old, exists, err := d.getTx(ctx, tx, a.ID)
		if err != nil {
			return nil, err
		}
		if exists && sameAgency(old, a) {
			return nil, nil
		}
		change := Docked
		a.Status, a.DockedBy, a.DockedAt, a.UpdatedAt, a.Version = Active, actor, at, at, 1
		if exists {
			change = Updated
			a.Status, a.DockedBy, a.DockedAt, a.Version = old.Status, old.DockedBy, old.DockedAt, old.Version+1
		}
		if err := d.putAgency(ctx, tx, a, exists); err != nil {
			return nil, err
		}
		p := &pending{entity: EntityAgency, id: a.ID, change: change, after: a}
		if exists {
			p.before = old
		}
		return p, nil
	})
}

// Suspend suspends agency id, for reason (required, kept in the change's
// note). An agency already suspended records nothing.
func (d *Directory) Suspend(ctx context.Context, id, actor, reason string) (Change, error) {
	if err := checkText("suspension reason", reason, true, 500); err != nil {
		return Change{}, err
	}
	return d.setStatus(ctx, id, actor, reason, Suspended, SuspendedC)
}

// Resume lifts the suspension of agency id; reason may be empty. An active
// agency records nothing.
func (d *Directory) Resume(ctx context.Context, id, actor, reason string) (Change, error) {
	if err := checkText("resumption reason", reason, false, 500); err != nil {
		return Change{}, err
	}
	return d.setStatus(ctx, id, actor, reason, Active, Resumed)
}

func (d *Directory) setStatus(ctx context.Context, id, actor, note, status, change string) (Change, error) {
	return d.modify(ctx, id, actor, note, change, func(a *Agency) error {
		a.Status = status
		return nil
	})
}

// RotateKey replaces the signing JWKS of agency id ("key_rotated"); the
// same JWKS records nothing.
func (d *Directory) RotateKey(ctx context.Context, id string, jwks []byte, actor string) (Change, error) {
	canon, err := checkJWKS(id, jwks)
	if err != nil {
		return Change{}, err
	}
	return d.modify(ctx, id, actor, "", KeyRotated, func(a *Agency) error {
		a.JWKS = canon
		return nil
	})
}

// modify applies fn to agency id and records change unless fn changed
// nothing.
func (d *Directory) modify(ctx context.Context, id, actor, note, change string, fn func(*Agency) error) (Change, error) {
	return d.one(ctx, actor, func(tx *sql.Tx, at time.Time) (*pending, error) {
		old, exists, err := d.getTx(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("%w: agency %q", ErrNotFound, id)
		}
		a := old
		if err := fn(&a); err != nil {
			return nil, err
		}
		if sameAgency(old, a) && old.Status == a.Status {
			return nil, nil
		}
		a.UpdatedAt, a.Version = at, old.Version+1
		if err := d.putAgency(ctx, tx, a, true); err != nil {
			return nil, err
		}
		return &pending{entity: EntityAgency, id: id, change: change, note: note, before: old, after: a}, nil
	})
}

// DockSource docks record source s (its Name, Level, Region, Kind and
// Description) as actor, with Dock's rules.
func (d *Directory) DockSource(ctx context.Context, s Source, actor string) (Change, error) {
	s, err := normaliseSource(s)
	if err != nil {
		return Change{}, err
	}
	return d.one(ctx, actor, func(tx *sql.Tx, at time.Time) (*pending, error) {
		old, exists, err := d.getSourceTx(ctx, tx, s.Name)
		if err != nil {
			return nil, err
		}
		if exists && sameSource(old, s) {
			return nil, nil
		}
		change := Docked
		s.Status, s.DockedBy, s.DockedAt, s.UpdatedAt, s.Version = Active, actor, at, at, 1
		if exists {
			change = Updated
			s.Status, s.DockedBy, s.DockedAt, s.Version = old.Status, old.DockedBy, old.DockedAt, old.Version+1
		}
		if err := d.putSource(ctx, tx, s, exists); err != nil {
			return nil, err
		}
		p := &pending{entity: EntitySource, id: s.Name, change: change, after: s}
		if exists {
			p.before = old
		}
		return p, nil
	})
}

// SuspendSource takes record source name out of routing, for reason
// (required): a running broker stops asking it and falls back to the next
// level. A source already suspended records nothing.
func (d *Directory) SuspendSource(ctx context.Context, name, actor, reason string) (Change, error) {
	if err := checkText("suspension reason", reason, true, 500); err != nil {
		return Change{}, err
	}
	return d.setSourceStatus(ctx, name, actor, reason, Suspended, SuspendedC)
}

// ResumeSource puts record source name back into routing; reason may be
// empty.
func (d *Directory) ResumeSource(ctx context.Context, name, actor, reason string) (Change, error) {
	if err := checkText("resumption reason", reason, false, 500); err != nil {
		return Change{}, err
	}
	return d.setSourceStatus(ctx, name, actor, reason, Active, Resumed)
}

func (d *Directory) setSourceStatus(ctx context.Context, name, actor, note, status, change string) (Change, error) {
	return d.one(ctx, actor, func(tx *sql.Tx, at time.Time) (*pending, error) {
		old, exists, err := d.getSourceTx(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("%w: record source %q", ErrNotFound, name)
		}
		if old.Status == status {
			return nil, nil
		}
		s := old
		s.Status, s.UpdatedAt, s.Version = status, at, old.Version+1
		if err := d.putSource(ctx, tx, s, true); err != nil {
			return nil, err
		}
		return &pending{entity: EntitySource, id: name, change: change, note: note, before: old, after: s}, nil
	})
}
