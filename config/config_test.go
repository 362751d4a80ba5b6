package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("", env(map[string]string{EnvData: t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Kafka.Embedded || cfg.Store.IsPostgres() {
		t.Fatalf("defaults should be embedded Kafka and SQLite: %+v", cfg)
	}
	if cfg.Limits.MaxMessageBytes != 256<<10 {
		t.Fatalf("max message bytes = %d", cfg.Limits.MaxMessageBytes)
	}
}

func TestSampleConfigLoads(t *testing.T) {
	cfg, err := Load("sample.yaml", env(map[string]string{"KAFKA_PASSWORD": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Embedded || len(cfg.Kafka.Brokers) == 0 || !cfg.Store.IsPostgres() {
		t.Fatalf("sample should point at a real cluster and PostgreSQL: %+v", cfg.Kafka)
	}
	if cfg.Kafka.SASL == nil || cfg.Kafka.SASL.Password != "s3cret" {
		t.Fatal("SASL password not read from password_env")
	}
	if len(cfg.Adapters) == 0 {
		t.Fatal("sample has no adapters")
	}
	var opts struct {
		DSN string `yaml:"dsn"`
	}
	if err := cfg.Adapters[0].DecodeOptions(&opts); err != nil || opts.DSN == "" {
		t.Fatalf("adapter options: %v %+v", err, opts)
	}
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load("", env(map[string]string{
		EnvData:         dir,
		EnvKafkaBrokers: "10.0.0.1:9092, 10.0.0.2:9092",
		EnvDB:           "postgres://u@h/db",
		EnvHTTPAddr:     "127.0.0.1:9999",
		EnvLogLevel:     "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Embedded || len(cfg.Kafka.Brokers) != 2 || cfg.Kafka.Brokers[1] != "10.0.0.2:9092" {
		t.Fatalf("brokers: %+v", cfg.Kafka)
	}
	if cfg.Store.DSN != "postgres://u@h/db" || cfg.HTTP.Addr != "127.0.0.1:9999" || cfg.Log.Level != "debug" || cfg.DataDir != dir {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
}

func TestDataFolderConfigIsFound(t *testing.T) {
	dir := t.TempDir()
	c := Default(dir)
	c.HTTP.Addr = "127.0.0.1:18181"
	if err := c.Write(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	got, err := Load("", env(map[string]string{EnvData: dir}))
	if err != nil {
		t.Fatal(err)
	}
	if got.HTTP.Addr != "127.0.0.1:18181" {
		t.Fatalf("generated config not used: %s", got.HTTP.Addr)
	}
	if got.Limits.ClockSkew.D() != 2*time.Minute {
		t.Fatalf("duration round trip: %v", got.Limits.ClockSkew.D())
	}
}

func TestErrorsNameTheField(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"bad broker", "kafka:\n  embedded: false\n  brokers: [\"no-port\"]\n", "/kafka/brokers/0"},
		{"unknown field", "kafka:\n  brokerz: []\n", "brokerz"},
		{"bad level", "log:\n  level: loud\n", "/log/level"},
		{"bad duration", "limits:\n  clock_skew: soon\n", "limits.clock_skew: invalid duration"},
		{"too small limit", "limits:\n  max_message_bytes: 10\n", "/limits/max_message_bytes"},
		{"county code at province level", "agencies:\n  - {id: court-jl, name: Court, level: province, region: \"220582\"}\n", "/agencies/0/region"},
		{"duplicate agency", "agencies:\n  - {id: a1, name: A, level: county, region: \"220582\"}\n  - {id: a1, name: B, level: county, region: \"220582\"}\n", "/agencies/1/id"},
		{"no brokers", "kafka:\n  embedded: false\n  brokers: []\n", "/kafka/brokers"},
		{"sasl without password", "kafka:\n  sasl: {mechanism: SCRAM-SHA-512, username: u}\n", "/kafka/sasl/password"},
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
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil)); err == nil {
		t.Fatal("want an error for a missing --config file")
	}
}
