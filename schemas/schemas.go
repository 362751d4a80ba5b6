// Package schemas holds the JSON Schemas of every Certless document — the
// messages agencies exchange and the service configuration — embedded in the
// binary and compiled once.
//
// A Set promises: every schema under json/ compiles at construction or the
// construction fails; Validate reports the JSON pointer of the first offending
// field, so a rejection can tell an integrator exactly what to fix.
package schemas

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"

	"github.com/certless/certless/schemas/residentid"
)

//go:embed json/*.json
var files embed.FS

// ErrUnknownSchema is returned for a schema name that is not embedded.
var ErrUnknownSchema = errors.New("schemas: unknown schema")

// ValidationError says why a document does not match its schema. Pointer is
// the JSON pointer (RFC 6901) of the first offending field; "" is the root.
type ValidationError struct {
	Schema  string
	Pointer string
	Reason  string
}

func (e *ValidationError) Error() string {
	p := e.Pointer
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("%s: %s: %s", e.Schema, p, e.Reason)
}

// Set is a compiled set of schemas, safe for concurrent use.
type Set struct {
	compiled map[string]*gojsonschema.Schema
	raw      map[string][]byte
}

var (
	defaultOnce sync.Once
	defaultSet  *Set
	defaultErr  error
)

// Default returns the embedded set, compiled once per process.
func Default() (*Set, error) {
	defaultOnce.Do(func() { defaultSet, defaultErr = Compile(files) })
	return defaultSet, defaultErr
}

// Validate validates doc against the embedded schema called name.
func Validate(name string, doc []byte) error {
	s, err := Default()
	if err != nil {
		return err
	}
	return s.Validate(name, doc)
}

// Compile compiles every json/*.json file of fsys. A schema's name is its
// file name without ".json" (for example "verification_request.v1").
func Compile(fsys fs.FS) (*Set, error) {
	formatsOnce.Do(registerFormats)
	names, err := fs.Glob(fsys, "json/*.json")
	if err != nil {
		return nil, fmt.Errorf("schemas: list: %w", err)
	}
	s := &Set{compiled: map[string]*gojsonschema.Schema{}, raw: map[string][]byte{}}
	for _, path := range names {
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return nil, fmt.Errorf("schemas: read %s: %w", path, err)
		}
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		sl := gojsonschema.NewSchemaLoader()
		sl.Draft = gojsonschema.Draft7
		sl.Validate = true
		compiled, err := sl.Compile(gojsonschema.NewBytesLoader(b))
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", name, err)
		}
		s.compiled[name] = compiled
		s.raw[name] = b
	}
	return s, nil
}

// Names lists the schema names in the set, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.raw))
	for n := range s.raw {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Raw returns the schema document called name.
func (s *Set) Raw(name string) ([]byte, bool) {
	b, ok := s.raw[name]
	return b, ok
}

// Validate validates doc against the schema called name. It returns a
// *ValidationError when doc is valid JSON that breaks the schema.
func (s *Set) Validate(name string, doc []byte) error {
	sch, ok := s.compiled[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownSchema, name)
	}
	res, err := sch.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return &ValidationError{Schema: name, Reason: "not valid JSON: " + err.Error()}
	}
	if res.Valid() {
		return nil
	}
	errs := res.Errors()
	// Report the deepest field first: "required" errors name the parent, so
	// prefer a property-level error when there is one at the same depth.
	first := errs[0]
	for _, e := range errs {
		// "Must validate then/else/all of" only wraps the error that says
		// what is wrong; report that one.
		if !wrapperErrors[e.Type()] {
			first = e
			break
		}
	}
	ptr := contextPointer(first.Context())
	switch first.Type() {
	case "required", "additional_property_not_allowed", "invalid_property_name":
		if f, ok := first.Details()["property"].(string); ok {
			ptr = strings.TrimSuffix(ptr, "/") + "/" + escape(f)
		}
	}
	reason := first.Description()
	if first.Type() == "format" && first.Details()["format"] == ResidentIDFormat {
		// Say which part of the number is wrong, not just "bad format".
		if v, ok := first.Value().(string); ok {
			if err := residentid.Validate(v); err != nil {
				reason = err.Error()
			}
		}
	}
	return &ValidationError{Schema: name, Pointer: ptr, Reason: reason}
}

// wrapperErrors are gojsonschema error types that only summarise others.
var wrapperErrors = map[string]bool{
	"condition_then": true, "condition_else": true, "number_all_of": true,
	"number_any_of": true, "number_one_of": true, "number_not": true,
}

// ResidentIDFormat is the JSON Schema "format" of an 18-character resident
// ID number, validated fully by package residentid (region shape, real birth
// date, check character).
const ResidentIDFormat = "resident-id"

var formatsOnce sync.Once

// registerFormats adds Certless' formats to gojsonschema's global checker
// chain, once, before the first schema is compiled.
func registerFormats() {
	gojsonschema.FormatCheckers.Add(ResidentIDFormat, residentIDChecker{})
}

type residentIDChecker struct{}

// IsFormat applies to strings only, as JSON Schema formats do.
func (residentIDChecker) IsFormat(input any) bool {
	s, ok := input.(string)
	return !ok || residentid.Validate(s) == nil
}

// Export writes every schema of the set into dir as NAME.json.
func (s *Set) Export(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("schemas: export: %w", err)
	}
	for _, n := range s.Names() {
		if err := os.WriteFile(filepath.Join(dir, n+".json"), s.raw[n], 0o644); err != nil {
			return fmt.Errorf("schemas: export %s: %w", n, err)
		}
	}
	return nil
}

// contextPointer turns gojsonschema's "(root).a.0.b" into "/a/0/b".
func contextPointer(c *gojsonschema.JsonContext) string {
	if c == nil {
		return ""
	}
	var parts []string
	for _, p := range strings.Split(c.String("\x00"), "\x00") {
		if p == "(root)" || p == "" {
			continue
		}
		parts = append(parts, escape(p))
	}
	if len(parts) == 0 {
		return ""
	}
	return "/" + strings.Join(parts, "/")
}

func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
