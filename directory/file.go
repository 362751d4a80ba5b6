package directory

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// SchemaName is the JSON Schema (schemas/json) of a directory file.
const SchemaName = "agency_directory.v1"

// FileType is the "type" member of a directory file.
const FileType = "agency_directory"

// File is the directory as exported and imported: every agency and record
// source with its status and history fields.
type File struct {
	Type       string    `json:"type"` // FileType
	ExportedAt time.Time `json:"exported_at"`
	Agencies   []Agency  `json:"agencies"`
	Sources    []Source  `json:"sources"`
}

// Marshal is f as indented JSON, the form export writes.
func (f File) Marshal() ([]byte, error) {
	if f.Agencies == nil {
		f.Agencies = []Agency{}
	}
	if f.Sources == nil {
		f.Sources = []Source{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("directory: encode file: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseFile validates b against the schema agency_directory.v1 and decodes
// it; entries are checked again by Import.
func ParseFile(b []byte) (File, error) {
	if err := schemas.Validate(SchemaName, b); err != nil {
		return File{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("%w: directory file: %v", ErrInvalid, err)
	}
	return f, nil
}

// Export returns the whole directory.
func (d *Directory) Export(ctx context.Context) (File, error) {
	as, err := d.List(ctx)
	if err != nil {
		return File{}, err
	}
	ss, err := d.ListSources(ctx)
	if err != nil {
		return File{}, err
	}
	return File{Type: FileType, ExportedAt: normTime(d.now()), Agencies: as, Sources: ss}, nil
}

// Import makes the directory hold the file's entries, as actor, in one
// transaction: every entry is checked first, and one bad entry imports
// nothing. An entry not yet docked is inserted as the file has it (status,
// docked_by, docked_at, updated_at, version); one docked with the same
// content and status records nothing; one that differs takes the file's
// content and status at its next version. Each insert or replacement is an
// "imported" change. Entries the file does not name are left as they are.
func (d *Directory) Import(ctx context.Context, f File, actor string) ([]Change, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if f.Type != "" && f.Type != FileType {
		return nil, invalid("file type %q is not %q", f.Type, FileType)
	}
	as := make([]Agency, len(f.Agencies))
	seen := map[string]bool{}
	for i, a := range f.Agencies {
		n, err := normaliseAgency(a)
		if err != nil {
			return nil, err
		}
		if err := checkImported("agency", a.ID, a.Status, a.DockedBy, a.DockedAt, a.Version); err != nil {
			return nil, err
		}
		if seen[a.ID] {
			return nil, invalid("agency %s is in the file twice", a.ID)
		}
		seen[a.ID] = true
		as[i] = n
	}
	ss := make([]Source, len(f.Sources))
	seen = map[string]bool{}
	for i, s := range f.Sources {
		n, err := normaliseSource(s)
		if err != nil {
			return nil, err
		}
		if err := checkImported("record source", s.Name, s.Status, s.DockedBy, s.DockedAt, s.Version); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, invalid("record source %s is in the file twice", s.Name)
		}
		seen[s.Name] = true
		ss[i] = n
	}
	return d.importEntries(ctx, as, ss, actor, false)
}

func checkImported(what, id, status, dockedBy string, dockedAt time.Time, version int) error {
	if err := checkStatus(what, id, status); err != nil {
		return err
	}
	if err := checkText(what+" "+id+": docked_by", dockedBy, true, 200); err != nil {
		return err
	}
	if dockedAt.IsZero() || version < 1 {
		return invalid("%s %s: docked_at and a version of at least 1 are required", what, id)
	}
	return nil
}

// importEntries writes normalised entries; onlyEmpty makes it a no-op
// unless the directory holds no entry and no change.
func (d *Directory) importEntries(ctx context.Context, as []Agency, ss []Source, actor string, onlyEmpty bool) ([]Change, error) {
	var cs []Change
	err := d.db.Write(ctx, func(tx *sql.Tx) error {
		at := normTime(d.now())
		if onlyEmpty {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM directory_changes) + (SELECT count(*) FROM directory_agencies) + (SELECT count(*) FROM directory_sources)`).Scan(&n); err != nil {
				return fmt.Errorf("directory: count: %w", err)
			}
			if n > 0 {
				return nil
			}
		}
		var ps []pending
		for _, a := range as {
			a.DockedAt, a.UpdatedAt = normTime(a.DockedAt), normTime(a.UpdatedAt)
			if a.UpdatedAt.IsZero() {
				a.UpdatedAt = a.DockedAt
			}
			old, exists, err := d.getTx(ctx, tx, a.ID)
			if err != nil {
				return err
			}
			if exists && sameAgency(old, a) && old.Status == a.Status {
				continue
			}
			p := pending{entity: EntityAgency, id: a.ID, change: Imported}
			if exists {
				a.DockedBy, a.DockedAt, a.UpdatedAt, a.Version = old.DockedBy, old.DockedAt, at, old.Version+1
				p.before = old
			}
			if err := d.putAgency(ctx, tx, a, exists); err != nil {
				return err
			}
			p.after = a
			ps = append(ps, p)
		}
		for _, s := range ss {
			s.DockedAt, s.UpdatedAt = normTime(s.DockedAt), normTime(s.UpdatedAt)
			if s.UpdatedAt.IsZero() {
				s.UpdatedAt = s.DockedAt
			}
			old, exists, err := d.getSourceTx(ctx, tx, s.Name)
			if err != nil {
				return err
			}
			if exists && sameSource(old, s) && old.Status == s.Status {
				continue
			}
			p := pending{entity: EntitySource, id: s.Name, change: Imported}
			if exists {
				s.DockedBy, s.DockedAt, s.UpdatedAt, s.Version = old.DockedBy, old.DockedAt, at, old.Version+1
				p.before = old
			}
			if err := d.putSource(ctx, tx, s, exists); err != nil {
				return err
			}
			p.after = s
			ps = append(ps, p)
		}
		if len(ps) == 0 {
			return nil
		}
		var err error
		cs, err = d.record(ctx, tx, actor, at, ps)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d.logged(ctx, cs)
}

// ImportConfig is the first start: when the directory is empty (no entry,
// no change ever), it imports the configuration's agencies and record
// sources (adapters), active, docked by actor now, each agency with its
// signing keys and, when it has encrypt_receipts, its encryption key from
// reg (the keys folder); a config kind of "" is "other". Otherwise it does
// nothing and returns no change: after the first start the directory, not
// the configuration, is the source of truth.
func (d *Directory) ImportConfig(ctx context.Context, agencies []config.Agency, sources []config.Adapter, reg *keys.Registry, actor string) ([]Change, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	at := normTime(d.now())
	as := make([]Agency, 0, len(agencies))
	for _, c := range agencies {
		a := Agency{ID: c.ID, Level: c.Level, Region: c.Region, Name: c.Name, Kind: c.Kind}
		if a.Kind == "" {
			a.Kind = "other"
		}
		var sig []keys.Public
		if reg != nil {
			for _, p := range reg.Agency(c.ID) {
				if p.Use() == keys.UseSig {
					sig = append(sig, p)
				}
			}
		}
		if len(sig) == 0 {
			return nil, invalid("agency %s of the configuration has no signing key in the keys folder", c.ID)
		}
		jwks, err := keys.MarshalJWKS(sig)
		if err != nil {
			return nil, fmt.Errorf("directory: agency %s: %w", c.ID, err)
		}
		a.JWKS = jwks
		if c.EncryptReceipts {
			p, err := reg.EncryptionKey(c.ID, at)
			if err != nil {
				return nil, invalid("agency %s of the configuration encrypts receipts but has no encryption key: %v", c.ID, err)
			}
			one, err := keys.MarshalJWKS([]keys.Public{p})
			if err != nil {
				return nil, fmt.Errorf("directory: agency %s: %w", c.ID, err)
			}
			var set struct{ Keys []json.RawMessage }
			if err := json.Unmarshal(one, &set); err != nil || len(set.Keys) != 1 {
				return nil, fmt.Errorf("directory: agency %s: encryption key: %v", c.ID, err)
			}
			a.EncryptionKey = set.Keys[0]
		}
		n, err := normaliseAgency(a)
		if err != nil {
			return nil, err
		}
		n.Status, n.DockedBy, n.DockedAt, n.UpdatedAt, n.Version = Active, actor, at, at, 1
		as = append(as, n)
	}
	ss := make([]Source, 0, len(sources))
	for _, c := range sources {
		level := c.Level
		if level == "" {
			if r, ok := regionLevel(c.Region); ok {
				level = r
			}
		}
		n, err := normaliseSource(Source{Name: c.Name, Level: level, Region: c.Region, Kind: c.Type})
		if err != nil {
			return nil, err
		}
		n.Status, n.DockedBy, n.DockedAt, n.UpdatedAt, n.Version = Active, actor, at, at, 1
		ss = append(ss, n)
	}
	return d.importEntries(ctx, as, ss, actor, true)
}
