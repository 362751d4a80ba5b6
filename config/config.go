// Package config loads the one typed configuration of a Certless process.
//
// Load promises: the returned Config has every default filled in, every
// environment override applied, and has passed the embedded JSON Schema
// (schemas/json/config.v1.json) and the semantic checks below; otherwise the
// error names the field and the reason. An adapter's own options stay raw
// until that adapter decodes them with Adapter.DecodeOptions.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certless/certless/schemas"
)

// Environment variables that override the file.
const (
	EnvConfig       = "CERTLESS_CONFIG"        // path of the YAML file
	EnvData         = "CERTLESS_DATA"          // data folder (keys, SQLite, generated config)
	EnvKafkaBrokers = "CERTLESS_KAFKA_BROKERS" // comma-separated; disables the embedded cluster
	EnvDB           = "CERTLESS_DB"            // decision store DSN
	EnvHTTPAddr     = "CERTLESS_HTTP_ADDR"     // metrics and health listen address
	EnvPprof        = "CERTLESS_PPROF"         // "true": http.pprof on
	EnvLogLevel     = "CERTLESS_LOG_LEVEL"
)

// DefaultDataDir is where dev, demo and every command without --config keep
// their state.
const DefaultDataDir = ".certless"

// FileName is the name of the generated config inside the data folder.
const FileName = "config.yaml"

// Config is the whole configuration of a Certless process.
type Config struct {
	DataDir     string `yaml:"data_dir" json:"data_dir"`
	BrokerID    string `yaml:"broker_id" json:"broker_id"`
	Kafka       Kafka  `yaml:"kafka" json:"kafka"`
	Store       Store  `yaml:"store" json:"store"`
	HTTP        HTTP   `yaml:"http" json:"http"`
	Log         Log    `yaml:"log" json:"log"`
	KeysDir     string `yaml:"keys_dir" json:"keys_dir"`
	PoliciesDir string `yaml:"policies_dir" json:"policies_dir"`
	// DataOwners are the police data owners: the only parties an agreement
	// may name as provider (and none may request).
	DataOwners []string  `yaml:"data_owners" json:"data_owners,omitempty"`
	Limits     Limits    `yaml:"limits" json:"limits"`
	Agencies   []Agency  `yaml:"agencies" json:"agencies,omitempty"`
	Adapters   []Adapter `yaml:"adapters" json:"adapters,omitempty"`
	// Directory is how the broker follows the docking directory.
	Directory Directory `yaml:"directory" json:"directory"`
	// Exchange is how the broker runs the periodic-exchange schedules.
	Exchange Exchange `yaml:"exchange" json:"exchange"`
	// Report tunes the supervision reports.
	Report Report `yaml:"report" json:"report"`
	// Transparency is the transparency log every decision is appended to.
	Transparency Transparency `yaml:"transparency" json:"transparency"`
	// File is the file Load read; empty when it ran on the built-in
	// defaults (the dev configuration).
	File string `yaml:"-" json:"-"`
}

// Directory configures how a running broker follows the docking directory.
type Directory struct {
	// Poll is how often it looks for changes; default 1s.
	Poll Duration `yaml:"poll" json:"poll,omitempty"`
}

// Exchange configures the broker's scheduler of periodic exchange.
type Exchange struct {
	// Disabled keeps this broker from running schedules.
	Disabled bool `yaml:"disabled" json:"disabled,omitempty"`
	// CatchUp bounds a schedule's first run: periods that ended longer
	// ago are not sent (default 168h). Later, every missed period is.
	CatchUp Duration `yaml:"catch_up" json:"catch_up,omitempty"`
	// AckDeadline is how long a sent batch may go unacknowledged before
	// it is offered again (default 24h).
	AckDeadline Duration `yaml:"ack_deadline" json:"ack_deadline,omitempty"`
	// MaxBatchesPerRound bounds one round's work (default 50).
	MaxBatchesPerRound int `yaml:"max_batches_per_round" json:"max_batches_per_round,omitempty"`
}

// Report tunes `certless report`: the on-time deadline and the anomaly
// thresholds (a zero field keeps the default of package report).
type Report struct {
	Deadline  Duration         `yaml:"deadline" json:"deadline,omitempty"`
	Anomalies ReportThresholds `yaml:"anomalies" json:"anomalies"`
}

// ReportThresholds are report.Thresholds as configured.
type ReportThresholds struct {
	BaselineDays    int      `yaml:"baseline_days" json:"baseline_days,omitempty"`
	VolumeFactor    float64  `yaml:"volume_factor" json:"volume_factor,omitempty"`
	MinVolume       int      `yaml:"min_volume" json:"min_volume,omitempty"`
	OffHoursBurst   int      `yaml:"off_hours_burst" json:"off_hours_burst,omitempty"`
	SubjectAgencies int      `yaml:"subject_agencies" json:"subject_agencies,omitempty"`
	SubjectWindow   Duration `yaml:"subject_window" json:"subject_window,omitempty"`
	PurposeMismatch int      `yaml:"purpose_mismatch" json:"purpose_mismatch,omitempty"`
	DenialRise      float64  `yaml:"denial_rise" json:"denial_rise,omitempty"`
}

// Transparency configures the transparency log.
type Transparency struct {
	// Origin is the first line of every checkpoint; default
	// "certless.local/<broker_id>".
	Origin string `yaml:"origin" json:"origin,omitempty"`
	// KeyFile holds the log's Ed25519 note signer key; default
	// <keys_dir>/log.key (dev and demo create it; serve only reads it).
	KeyFile string `yaml:"key_file" json:"key_file,omitempty"`
	// Interval between checkpoints while leaves arrive; default 1s.
	Interval Duration `yaml:"interval" json:"interval,omitempty"`
	// Tolerance is how long checkpointing may fail before the broker
	// stops answering; default 30s.
	Tolerance Duration `yaml:"tolerance" json:"tolerance,omitempty"`
	// Quorum is how many witness cosignatures a receipt proof waits for.
	Quorum    int       `yaml:"quorum" json:"quorum,omitempty"`
	Witnesses []Witness `yaml:"witnesses" json:"witnesses,omitempty"`
}

// Witness is a C2SP tlog-witness asked to cosign every checkpoint.
type Witness struct {
	URL  string `yaml:"url" json:"url"`
	VKey string `yaml:"vkey" json:"vkey"`
}

// LogOrigin is the checkpoint origin in force.
func (c *Config) LogOrigin() string {
	if c.Transparency.Origin != "" {
		return c.Transparency.Origin
	}
	return "certless.local/" + c.BrokerID
}

// LogKeyFile is the log key file in force.
func (c *Config) LogKeyFile() string {
	if c.Transparency.KeyFile != "" {
		return c.Transparency.KeyFile
	}
	return filepath.Join(c.KeysDir, "log.key")
}

// Kafka is how to reach the Kafka cluster.
type Kafka struct {
	// Embedded starts an in-process Kafka-protocol cluster (dev only).
	Embedded          bool     `yaml:"embedded" json:"embedded"`
	Brokers           []string `yaml:"brokers" json:"brokers"`
	TopicPrefix       string   `yaml:"topic_prefix" json:"topic_prefix"`
	GroupID           string   `yaml:"group_id" json:"group_id,omitempty"`
	Partitions        int      `yaml:"partitions" json:"partitions,omitempty"`
	ReplicationFactor int      `yaml:"replication_factor" json:"replication_factor,omitempty"`
	// SessionTimeout is how long the group waits for a silent broker process
	// before its partitions move to another; RebalanceTimeout how long a
	// rebalance waits for members to rejoin.
	SessionTimeout   Duration `yaml:"session_timeout" json:"session_timeout,omitempty"`
	RebalanceTimeout Duration `yaml:"rebalance_timeout" json:"rebalance_timeout,omitempty"`
	// StartupTimeout bounds how long serve and dev wait at start-up for a
	// broker to answer before they stop with the likely cause.
	StartupTimeout Duration `yaml:"startup_timeout" json:"startup_timeout,omitempty"`
	TLS            *TLS     `yaml:"tls" json:"tls,omitempty"`
	SASL           *SASL    `yaml:"sasl" json:"sasl,omitempty"`
}

// TLS configures TLS to the Kafka brokers.
type TLS struct {
	Enabled            bool   `yaml:"enabled" json:"enabled"`
	CAFile             string `yaml:"ca_file" json:"ca_file,omitempty"`
	CertFile           string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file" json:"key_file,omitempty"`
	ServerName         string `yaml:"server_name" json:"server_name,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
}

// SASL configures SASL authentication to the Kafka brokers. The password is
// read from the environment variable PasswordEnv when set, so it need not be
// written in the file.
type SASL struct {
	Mechanism   string `yaml:"mechanism" json:"mechanism"`
	Username    string `yaml:"username" json:"username"`
	Password    string `yaml:"password" json:"password,omitempty"`
	PasswordEnv string `yaml:"password_env" json:"password_env,omitempty"`
}

// Store is the decision store.
type Store struct {
	// DSN is postgres://… for PostgreSQL or a file path for SQLite.
	DSN       string   `yaml:"dsn" json:"dsn"`
	BatchSize int      `yaml:"batch_size" json:"batch_size,omitempty"`
	BatchWait Duration `yaml:"batch_wait" json:"batch_wait,omitempty"`
}

// IsPostgres reports whether the DSN names a PostgreSQL server.
func (s Store) IsPostgres() bool {
	return strings.HasPrefix(s.DSN, "postgres://") || strings.HasPrefix(s.DSN, "postgresql://")
}

// HTTP is the broker's HTTP address: operations (/metrics, /healthz,
// /readyz), the JWKS, the log, status lists and the auditor console.
type HTTP struct {
	Addr string `yaml:"addr" json:"addr"`
	// PublicURL is the endpoint's URL as agencies and verifiers reach it;
	// receipts name their status lists under <PublicURL>/status/. Default
	// http://<Addr> (of the bound address).
	PublicURL string `yaml:"public_url,omitempty" json:"public_url,omitempty"`
	// WebConfigFile is a web configuration file in Prometheus's format
	// (exporter-toolkit/web: TLS, basic auth with bcrypt hashes). With it
	// the operator and auditor paths need a login of the role; without
	// it the operator paths answer loopback clients only, the auditor
	// console nobody. Public: the JWKS, the log, the status lists.
	WebConfigFile string `yaml:"web_config_file,omitempty" json:"web_config_file,omitempty"`
	// Operators may read /metrics, /healthz and /readyz; Auditors use
	// /audit/. Both name users of the file's basic_auth_users.
	Operators []string `yaml:"operators,omitempty" json:"operators,omitempty"`
	Auditors  []string `yaml:"auditors,omitempty" json:"auditors,omitempty"`
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ to
	// operators; off by default.
	Pprof bool `yaml:"pprof,omitempty" json:"pprof,omitempty"`
}

// Log configures zap.
type Log struct {
	Level  string `yaml:"level" json:"level,omitempty"`
	Format string `yaml:"format" json:"format,omitempty"`
}

// Limits bound what the broker accepts and how long it waits.
type Limits struct {
	MaxMessageBytes int      `yaml:"max_message_bytes" json:"max_message_bytes,omitempty"`
	ClockSkew       Duration `yaml:"clock_skew" json:"clock_skew,omitempty"`
	MaxLifetime     Duration `yaml:"max_lifetime" json:"max_lifetime,omitempty"`
	AnswerTimeout   Duration `yaml:"answer_timeout" json:"answer_timeout,omitempty"`
	InFlight        int      `yaml:"in_flight" json:"in_flight,omitempty"`
	// RetryAttempts and RetryWindow bound the handling of one message
	// whose failures are transient: at most RetryAttempts attempts, none
	// started after RetryWindow. Then the sender gets a signed
	// "unavailable" receipt with RetryAfter as its hint, and the partition
	// moves on.
	RetryAttempts int      `yaml:"retry_attempts" json:"retry_attempts,omitempty"`
	RetryWindow   Duration `yaml:"retry_window" json:"retry_window,omitempty"`
	RetryAfter    Duration `yaml:"retry_after" json:"retry_after,omitempty"`
}

// Agency is a registered agency and its allow entries. Agreements in the
// policies folder authorise requests; the allow entries only shape
// `certless bench`'s mix and the dev samples.
type Agency struct {
	ID              string  `yaml:"id" json:"id"`
	Name            string  `yaml:"name" json:"name"`
	Kind            string  `yaml:"kind" json:"kind,omitempty"`
	Level           string  `yaml:"level" json:"level"`
	Region          string  `yaml:"region" json:"region"`
	EncryptReceipts bool    `yaml:"encrypt_receipts" json:"encrypt_receipts,omitempty"`
	Allow           []Allow `yaml:"allow" json:"allow,omitempty"`
}

// Allow lets an agency ask one query type, answered with at most Fields
// (every documented field of the query type when omitted or empty) for one
// of Purposes (any when omitted or empty). AnswerMismatch lets an identity
// answer say "the ID number exists, the name differs"; without it that is
// answered not_found, like an unknown ID number.
type Allow struct {
	Query          string   `yaml:"query" json:"query"`
	Fields         []string `yaml:"fields,omitempty" json:"fields,omitempty"`
	Purposes       []string `yaml:"purposes,omitempty" json:"purposes,omitempty"`
	AnswerMismatch bool     `yaml:"answer_mismatch,omitempty" json:"answer_mismatch,omitempty"`
}

// Adapter names a police record source. Options stay raw until the adapter
// decodes them.
type Adapter struct {
	Name    string         `yaml:"name" json:"name"`
	Type    string         `yaml:"type" json:"type"`
	Region  string         `yaml:"region" json:"region"`
	Level   string         `yaml:"level" json:"level,omitempty"`
	Options map[string]any `yaml:"options" json:"options,omitempty"`
}

// DecodeOptions decodes the adapter's raw options into v, refusing unknown
// fields.
func (a Adapter) DecodeOptions(v any) error {
	b, err := yaml.Marshal(a.Options)
	if err != nil {
		return fmt.Errorf("adapter %s options: %w", a.Name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("adapter %s options: %w", a.Name, err)
	}
	return nil
}

// Duration is a time.Duration written as "250ms", "2s", "5m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a string such as "2s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// MarshalYAML writes d as a string such as "2s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads "2s"-style durations.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"2s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration `certless dev` runs with: an embedded
// Kafka cluster, an SQLite store and keys, all inside dataDir.
func Default(dataDir string) Config {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return Config{
		DataDir:  dataDir,
		BrokerID: "certless",
		Kafka: Kafka{
			Embedded:          true,
			Brokers:           []string{"127.0.0.1:9092"},
			GroupID:           "certless-broker",
			Partitions:        4,
			ReplicationFactor: 1,
			SessionTimeout:    Duration(10 * time.Second),
			RebalanceTimeout:  Duration(30 * time.Second),
			StartupTimeout:    Duration(15 * time.Second),
		},
		Store:       Store{DSN: filepath.Join(dataDir, "decisions.db"), BatchSize: 256},
		HTTP:        HTTP{Addr: "127.0.0.1:8080"},
		Log:         Log{Level: "info", Format: "json"},
		KeysDir:     filepath.Join(dataDir, "keys"),
		PoliciesDir: filepath.Join(dataDir, "policies"),
		DataOwners:  []string{"police-jilin"},
		Limits: Limits{
			MaxMessageBytes: 256 << 10,
			ClockSkew:       Duration(2 * time.Minute),
			MaxLifetime:     Duration(24 * time.Hour),
			AnswerTimeout:   Duration(5 * time.Second),
			InFlight:        256,
			RetryAttempts:   4,
			RetryWindow:     Duration(30 * time.Second),
			RetryAfter:      Duration(time.Minute),
		},
		Transparency: Transparency{Interval: Duration(time.Second), Tolerance: Duration(30 * time.Second)},
	}
}

// Getenv is how Load reads the environment; os.Getenv in production.
type Getenv func(string) string

// Load finds and loads the configuration. The file is, in order: path (the
// --config flag), $CERTLESS_CONFIG, then <data>/config.yaml if it exists,
// where <data> is $CERTLESS_DATA or .certless. With no file the defaults
// for the data folder are used. Environment overrides apply last.
func Load(path string, getenv Getenv) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if path == "" {
		path = getenv(EnvConfig)
	}
	dataDir := getenv(EnvData)
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if path == "" {
		candidate := filepath.Join(dataDir, FileName)
		if _, err := os.Stat(candidate); err == nil {
			path = candidate
		}
	}
	cfg := Default(dataDir)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(b, &cfg); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		cfg.File = path
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

// Parse decodes a YAML document over the defaults and validates it, without
// reading the environment.
func Parse(b []byte) (*Config, error) {
	cfg := Default("")
	if err := decodeYAML(b, &cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

func decodeYAML(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) { // an empty file keeps the defaults
			return nil
		}
		if e := explain(b, reflect.TypeOf(cfg).Elem()); e != nil {
			return e
		}
		return err
	}
	return nil
}

func applyEnv(cfg *Config, getenv Getenv) error {
	if v := getenv(EnvKafkaBrokers); v != "" {
		var brokers []string
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		cfg.Kafka.Brokers = brokers
		cfg.Kafka.Embedded = false
	}
	if v := getenv(EnvDB); v != "" {
		cfg.Store.DSN = v
	}
	if v := getenv(EnvHTTPAddr); v != "" {
		cfg.HTTP.Addr = v
	}
	if v := getenv(EnvPprof); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: %s=%q: want true or false", EnvPprof, v)
		}
		cfg.HTTP.Pprof = on
	}
	if v := getenv(EnvLogLevel); v != "" {
		cfg.Log.Level = v
	}
	if cfg.Kafka.SASL != nil && cfg.Kafka.SASL.PasswordEnv != "" {
		pw := getenv(cfg.Kafka.SASL.PasswordEnv)
		if pw == "" {
			return fmt.Errorf("config: /kafka/sasl/password_env: environment variable %s is empty", cfg.Kafka.SASL.PasswordEnv)
		}
		cfg.Kafka.SASL.Password = pw
	}
	return nil
}

// Validate checks c against the configuration schema and the rules a schema
// cannot express. The error names the field as a JSON pointer.
func (c *Config) Validate() error {
	doc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode for validation: %w", err)
	}
	if err := schemas.Validate("config.v1", doc); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			p := ve.Pointer
			if p == "" {
				p = "/"
			}
			return fmt.Errorf("%s: %s", p, ve.Reason)
		}
		return err
	}
	if !c.Kafka.Embedded && len(c.Kafka.Brokers) == 0 {
		return errors.New("/kafka/brokers: at least one broker is required unless kafka.embedded is true")
	}
	if c.Kafka.SessionTimeout.D() != 0 && c.Kafka.SessionTimeout.D() < 6*time.Second {
		return errors.New("/kafka/session_timeout: at least 6s (Kafka refuses less)")
	}
	if c.Kafka.StartupTimeout.D() < 0 {
		return errors.New("/kafka/startup_timeout: must not be negative")
	}
	if c.Kafka.SASL != nil && c.Kafka.SASL.Password == "" {
		return errors.New("/kafka/sasl/password: required (or set password_env)")
	}
	seen := map[string]bool{}
	for i, a := range c.Agencies {
		if seen[a.ID] {
			return fmt.Errorf("/agencies/%d/id: duplicate agency %q", i, a.ID)
		}
		seen[a.ID] = true
		if err := checkLevel(a.Level, a.Region); err != nil {
			return fmt.Errorf("/agencies/%d/region: %w", i, err)
		}
	}
	names := map[string]bool{}
	for i, a := range c.Adapters {
		if names[a.Name] {
			return fmt.Errorf("/adapters/%d/name: duplicate adapter %q", i, a.Name)
		}
		names[a.Name] = true
		if a.Level != "" {
			if err := checkLevel(a.Level, a.Region); err != nil {
				return fmt.Errorf("/adapters/%d/region: %w", i, err)
			}
		}
	}
	return nil
}

// checkLevel checks that a GB/T 2260 region code fits its level: a province
// ends in 0000, a prefecture in 00 (and not 0000), a county in neither.
func checkLevel(level, region string) error {
	switch level {
	case "province":
		if !strings.HasSuffix(region, "0000") {
			return fmt.Errorf("province region code %s must end in 0000", region)
		}
	case "prefecture":
		if !strings.HasSuffix(region, "00") || strings.HasSuffix(region, "0000") {
			return fmt.Errorf("prefecture region code %s must end in 00 but not 0000", region)
		}
	case "county":
		if strings.HasSuffix(region, "00") {
			return fmt.Errorf("county region code %s must not end in 00", region)
		}
	}
	return nil
}

// Write saves c as YAML at path (mode 0600: it may hold a SASL password).
func (c *Config) Write(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("config: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
