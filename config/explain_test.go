package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestErrorsInTheUsersTerms: a misspelt field is named by its path with the
// closest known name, at every depth; a value of the wrong type by its path,
// the type wanted and what the file holds.
func TestErrorsInTheUsersTerms(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"top level", "brokerid: x\n", []string{"brokerid: unknown field; did you mean broker_id? (line 1)"}},
		{"one deep", "kafka:\n  embeded: true\n", []string{"kafka.embeded: unknown field; did you mean embedded? (line 2)"}},
		{"transposed", "kafka:\n  tsl: {enabled: true}\n", []string{"kafka.tsl: unknown field; did you mean tls?"}},
		{"two deep", "kafka:\n  tls:\n    ca_fiel: /etc/ca.pem\n", []string{"kafka.tls.ca_fiel: unknown field; did you mean ca_file? (line 3)"}},
		{"in a list", "agencies:\n  - id: a1\n    name: A\n    level: county\n    region: \"220582\"\n    allow:\n      - {query: criminal_record, purpose: [x]}\n",
			[]string{"agencies[0].allow[0].purpose: unknown field; did you mean purposes? (line 7)"}},
		{"nothing close", "limits:\n  zzzzzzzz: 1\n", []string{"limits.zzzzzzzz: unknown field; known fields: ", "answer_timeout", "in_flight"}},
		{"string for int", "limits:\n  in_flight: many\n", []string{`limits.in_flight: expected an integer, got "many" (line 2)`}},
		{"quoted int", "report:\n  anomalies:\n    min_volume: \"10\"\n", []string{`report.anomalies.min_volume: expected an integer, got "10" (line 3)`}},
		{"word for bool", "kafka:\n  embedded: sometimes\n", []string{`kafka.embedded: expected true or false, got "sometimes"`}},
		{"scalar for list", "kafka:\n  brokers: 127.0.0.1:9092\n", []string{`kafka.brokers: expected a list, got "127.0.0.1:9092"`}},
		{"list for struct", "store: [a, b]\n", []string{"store: expected a mapping of dsn, batch_size, batch_wait, got a list (line 1)"}},
		{"mapping for string", "http:\n  addr: {host: x}\n", []string{"http.addr: expected a string, got a mapping"}},
		{"bad duration", "limits:\n  clock_skew: soon\n", []string{`limits.clock_skew: invalid duration "soon"`}},
		{"word for float", "report:\n  anomalies:\n    volume_factor: high\n", []string{`report.anomalies.volume_factor: expected a number, got "high"`}},
		{"every problem", "kafka:\n  embeded: true\nlimits:\n  in_flight: many\n", []string{"kafka.embeded: unknown field; did you mean embedded?", `limits.in_flight: expected an integer, got "many"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, env(nil))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "config "+p+": ") {
				t.Errorf("error %q does not name the file", err)
			}
			if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "!!") {
				t.Errorf("error %q speaks Go or YAML types, not the file's terms", err)
			}
		})
	}
}

// TestValidFilesStillDecode: the explainer runs only on a failed decode, and
// finds nothing in files the decoder accepts (no false alarms on nulls,
// anchors, numbers written as floats, adapter options).
func TestValidFilesStillDecode(t *testing.T) {
	b, err := os.ReadFile("sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	extra := "\nbase: &b {in_flight: 8}\n"
	for _, doc := range [][]byte{b, []byte("kafka:\n  tls: ~\nreport:\n  anomalies:\n    volume_factor: 3\n")} {
		if e := explain(doc, typeOfConfig()); e != nil {
			t.Fatalf("explain finds fault with a valid file: %v", e)
		}
	}
	if e := explain([]byte(extra), typeOfConfig()); e == nil || !strings.Contains(e.Error(), "base: unknown field") {
		t.Fatalf("an unknown anchored field: %v", e)
	}
}

func TestFileIsRecorded(t *testing.T) {
	cfg, err := Load("", env(map[string]string{EnvData: t.TempDir()}))
	if err != nil || cfg.File != "" {
		t.Fatalf("defaults: file %q, %v", cfg.File, err)
	}
	cfg, err = Load("sample.yaml", env(map[string]string{"KAFKA_PASSWORD": "s3cret"}))
	if err != nil || cfg.File != "sample.yaml" {
		t.Fatalf("sample: file %q, %v", cfg.File, err)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"embedded", "brokers", "tls", "sasl", "group_id"}
	for unknown, want := range map[string]string{
		"embeded": "did you mean embedded?", "Brokers": "did you mean brokers?", "tsl": "did you mean tls?",
		"groupid": "did you mean group_id?", "x": "known fields: brokers, embedded, group_id, sasl, tls",
	} {
		if got := suggest(unknown, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", unknown, got, want)
		}
	}
}

func typeOfConfig() reflect.Type { return reflect.TypeFor[Config]() }
