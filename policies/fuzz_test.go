package policies_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/certless/certless/policies"
)

// FuzzParse: any bytes given to the agreement loader are refused with
// ErrInvalid or give an agreement with an id, a version and parties; it
// never panics, and a document it accepts is accepted again the same.
func FuzzParse(f *testing.F) {
	// The agreements the authorisation cases embed are the seeds.
	files, _ := filepath.Glob(filepath.Join("testdata", "authorise", "*.yaml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var c struct {
			Agreements map[string]string `yaml:"agreements"`
		}
		if err := yaml.Unmarshal(b, &c); err != nil {
			f.Fatal(err)
		}
		for _, doc := range c.Agreements {
			f.Add([]byte(doc))
		}
	}
	f.Add([]byte(`{"id": "x"}`))
	f.Add([]byte("id: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := policies.Parse(b)
		if err != nil {
			if !errors.Is(err, policies.ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		if a.ID == "" || a.Version < 1 {
			t.Fatalf("accepted an agreement without id or version: %+v", a)
		}
		again, err := policies.Parse(b)
		if err != nil || again.ID != a.ID || again.Version != a.Version {
			t.Fatalf("accepted once, then %v", err)
		}
	})
}
