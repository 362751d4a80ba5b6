package directory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/certless/certless/adapters/regions"
	"github.com/certless/certless/internal/sqldb"
	"github.com/certless/certless/keys"
)

// Statuses of an entry.
const (
	Active    = "active"
	Suspended = "suspended"
)

// Entities a change is about; they are also the kinds of their leaves.
const (
	EntityAgency = "agency"
	EntitySource = "record_source"
)

// Changes, as a change row and its leaf's reason record them.
const (
	Docked     = "docked"
	Updated    = "updated"
	SuspendedC = "suspended"
	Resumed    = "resumed"
	KeyRotated = "key_rotated"
	Imported   = "imported"
)

// Kinds are the kinds of agency the directory knows; "other" covers the rest.
var Kinds = []string{
	"court", "procuratorate", "education", "notary", "civil_affairs", "social_security",
	"human_resources", "health", "tax", "housing", "market_regulation", "police", "other",
}

// SourceKinds are the kinds of record source.
var SourceKinds = []string{"sql", "http"}

// ErrInvalid is wrapped by every error about an entry that cannot be
// docked as given; retrying will not help.
var ErrInvalid = errors.New("directory: invalid entry")

// ErrNotFound is wrapped when an id names no entry.
var ErrNotFound = errors.New("directory: no such entry")

// Agency is one docked agency.
type Agency struct {
	ID      string `json:"id"`
	Level   string `json:"level"`  // province, prefecture or county
	Region  string `json:"region"` // GB/T 2260 code, of the level
	Name    string `json:"name"`   // display name
	Kind    string `json:"kind"`   // one of Kinds
	Contact string `json:"contact,omitempty"`
	// JWKS is the agency's public signing keys, a JWK Set whose every kid is
	// "<id>/<key-id>"; stored and exported in canonical JSON.
	JWKS json.RawMessage `json:"jwks"`
	// EncryptionKey is the agency's ECDH-ES+A256KW public JWK for
	// confidential receipts, if it has one.
	EncryptionKey json.RawMessage `json:"encryption_key,omitempty"`
	Status        string          `json:"status"` // Active or Suspended
	DockedBy      string          `json:"docked_by"`
	DockedAt      time.Time       `json:"docked_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	Version       int             `json:"version"` // 1 when docked, +1 at every change
}

// Source is one docked record source (a police records database or
// service an adapter reads).
type Source struct {
	Name        string    `json:"name"`
	Level       string    `json:"level"`
	Region      string    `json:"region"`
	Kind        string    `json:"kind"` // sql or http
	Description string    `json:"description,omitempty"`
	Status      string    `json:"status"`
	DockedBy    string    `json:"docked_by"`
	DockedAt    time.Time `json:"docked_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Version     int       `json:"version"`
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// checkText refuses an empty (when required), over-long or control-laden
// display string.
func checkText(what, s string, required bool, max int) error {
	if s == "" {
		if required {
			return invalid("%s is empty", what)
		}
		return nil
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return invalid("%s is not UTF-8 of at most %d characters", what, max)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return invalid("%s has a control character", what)
	}
	return nil
}

func checkPlace(what, id, level, region string) error {
	switch regions.Level(level) {
	case regions.Province, regions.Prefecture, regions.County:
	default:
		return invalid("%s %s: level %q is not province, prefecture or county", what, id, level)
	}
	r, ok := regions.Lookup(region)
	if !ok {
		return invalid("%s %s: region %q is not a GB/T 2260 code of the table", what, id, region)
	}
	if string(r.Level) != level {
		return invalid("%s %s: region %s (%s) is a %s, not a %s", what, id, region, r.NameEN, r.Level, level)
	}
	return nil
}

func checkStatus(what, id, status string) error {
	if status != Active && status != Suspended {
		return invalid("%s %s: status %q is not active or suspended", what, id, status)
	}
	return nil
}

// normaliseAgency checks the docked content of a (not its status or
// history) and returns it with its keys in canonical JSON.
func normaliseAgency(a Agency) (Agency, error) {
	if err := keys.CheckAgency(a.ID); err != nil {
		return a, invalid("agency id %q is not ^[a-z0-9][a-z0-9-]{1,62}$", a.ID)
	}
	if err := checkPlace("agency", a.ID, a.Level, a.Region); err != nil {
		return a, err
	}
	if err := checkText("agency "+a.ID+": name", a.Name, true, 200); err != nil {
		return a, err
	}
	if !slices.Contains(Kinds, a.Kind) {
		return a, invalid("agency %s: kind %q is not one of %s", a.ID, a.Kind, strings.Join(Kinds, ", "))
	}
	if err := checkText("agency "+a.ID+": contact", a.Contact, false, 500); err != nil {
		return a, err
	}
	var err error
	if a.JWKS, err = checkJWKS(a.ID, a.JWKS); err != nil {
		return a, err
	}
	if len(a.EncryptionKey) > 0 && !bytes.Equal(bytes.TrimSpace(a.EncryptionKey), []byte("null")) {
		if a.EncryptionKey, err = checkEncryptionKey(a.ID, a.EncryptionKey); err != nil {
			return a, err
		}
	} else {
		a.EncryptionKey = nil
	}
	return a, nil
}

// checkJWKS parses a signing JWK Set of agency id and returns it canonical.
func checkJWKS(id string, jwks []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(jwks)) == 0 {
		return nil, invalid("agency %s: no signing JWKS", id)
	}
	if len(jwks) > keys.MaxImportSize {
		return nil, invalid("agency %s: JWKS larger than %d bytes", id, keys.MaxImportSize)
	}
	pubs, err := keys.ParseJWKS(jwks)
	if err != nil {
		return nil, invalid("agency %s: JWKS: %v", id, err)
	}
	if len(pubs) == 0 {
		return nil, invalid("agency %s: the JWKS has no keys", id)
	}
	for _, p := range pubs {
		if p.Agency != id {
			return nil, invalid("agency %s: JWKS key %q names agency %q", id, p.KID(), p.Agency)
		}
		if p.Use() != keys.UseSig {
			return nil, invalid("agency %s: JWKS key %q is a %s key, not a signing key (give it as the encryption key)", id, p.KID(), p.Alg)
		}
	}
	return canonical(json.RawMessage(jwks))
}

// checkEncryptionKey parses one public ECDH-ES+A256KW JWK of agency id and
// returns it canonical.
func checkEncryptionKey(id string, jwk []byte) (json.RawMessage, error) {
	if len(jwk) > keys.MaxImportSize {
		return nil, invalid("agency %s: encryption key larger than %d bytes", id, keys.MaxImportSize)
	}
	set := append(append([]byte(`{"keys":[`), jwk...), ']', '}')
	pubs, err := keys.ParseJWKS(set)
	if err != nil || len(pubs) != 1 {
		return nil, invalid("agency %s: encryption key is not one public JWK: %v", id, err)
	}
	p := pubs[0]
	if p.Agency != id {
		return nil, invalid("agency %s: encryption key %q names agency %q", id, p.KID(), p.Agency)
	}
	if p.Alg != keys.ECDHES {
		return nil, invalid("agency %s: encryption key %q has alg %s, want %s", id, p.KID(), p.Alg, keys.ECDHES)
	}
	return canonical(json.RawMessage(jwk))
}

func normaliseSource(s Source) (Source, error) {
	if err := keys.CheckAgency(s.Name); err != nil {
		return s, invalid("record source name %q is not ^[a-z0-9][a-z0-9-]{1,62}$", s.Name)
	}
	if err := checkPlace("record source", s.Name, s.Level, s.Region); err != nil {
		return s, err
	}
	if !slices.Contains(SourceKinds, s.Kind) {
		return s, invalid("record source %s: kind %q is not sql or http", s.Name, s.Kind)
	}
	if err := checkText("record source "+s.Name+": description", s.Description, false, 500); err != nil {
		return s, err
	}
	return s, nil
}

func checkActor(actor string) error {
	return checkText("actor", actor, true, 200)
}

// sameAgency reports whether a and b dock the same content (history and
// status aside); both are normalised.
func sameAgency(a, b Agency) bool {
	return a.ID == b.ID && a.Level == b.Level && a.Region == b.Region && a.Name == b.Name && a.Kind == b.Kind &&
		a.Contact == b.Contact && bytes.Equal(a.JWKS, b.JWKS) && bytes.Equal(a.EncryptionKey, b.EncryptionKey)
}

func sameSource(a, b Source) bool {
	return a.Name == b.Name && a.Level == b.Level && a.Region == b.Region && a.Kind == b.Kind && a.Description == b.Description
}

// canonical is v as canonical JSON: members sorted by name, no
// insignificant white space, no HTML escaping, numbers as written.
func canonical(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var x any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// normTime is t in the precision and zone the directory stores.
func normTime(t time.Time) time.Time { return sqldb.NormTime(t) }

// regionLevel is the level of a region code of the table.
func regionLevel(code string) (string, bool) {
	r, ok := regions.Lookup(code)
	return string(r.Level), ok
}
