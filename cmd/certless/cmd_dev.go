package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/config"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/webauth"
)

func newDevCmd(g *globals) *cobra.Command {
	var kafkaAddr, httpAddr string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the broker on embedded defaults: in-process Kafka, SQLite, generated keys, sample agencies",
		Long: `Run a complete Certless on this machine with no external service: an
in-process Kafka-protocol cluster, an SQLite decision store, synthetic Jilin
police records (a provincial database and five prefecture bureaus' own),
keys generated on first run and six sample agencies at province, prefecture
and county level. State lives in the data folder (--data, $CERTLESS_DATA,
default ./.certless).

Once ready it prints what runs where and the commands to paste into
another terminal, among them a request about a real subject of the dev
dataset. --kafka-addr and --http-addr move the embedded cluster and the
HTTP address (default 127.0.0.1:9092 and 127.0.0.1:8080) and are saved in
the data folder's config.yaml, so that the other commands find them.`,
		Example: `  certless dev
  certless dev --kafka-addr 127.0.0.1:19092 --http-addr 127.0.0.1:18080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dataDir := g.resolveDataDir(os.Getenv)
			boot, err := newLogger(config.Log{Level: "info", Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			var cfg *config.Config
			if g.configPath != "" {
				cfg, err = g.loadConfig(os.Getenv)
			} else {
				cfg, err = ensureDevData(cmd.Context(), dataDir, boot)
			}
			if err != nil {
				return err
			}
			if err := applyDevAddrs(cfg, kafkaAddr, httpAddr); err != nil {
				return err
			}
			if err := checkDevPorts(cfg); err != nil {
				return err
			}
			if g.configPath == "" && (kafkaAddr != "" || httpAddr != "") {
				path := filepath.Join(dataDir, config.FileName)
				if err := saveDevAddrs(path, cfg); err != nil {
					return err
				}
				boot.Info("addresses saved in the config, for the other commands", zap.String("path", path),
					zap.Strings("kafka", cfg.Kafka.Brokers), zap.String("http", cfg.HTTP.Addr))
			}
			log, err := newLogger(config.Log{Level: cfg.Log.Level, Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log.Info("certless dev", zap.String("data", cfg.DataDir), zap.String("config", dataDir+"/"+config.FileName),
				zap.String("store", redactDSN(cfg.Store.DSN)), zap.String("keys", cfg.KeysDir))
			svc, err := startService(cmd.Context(), cfg, log, serviceOptions{launched: g.launched})
			if err != nil {
				return err
			}
			devBanner(g.stdout, devBannerOf(g, cfg, svc, dataDir))
			return svc.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kafkaAddr, "kafka-addr", "", "the embedded Kafka cluster's address, 127.0.0.1:PORT (default from the config, 127.0.0.1:9092)")
	f.StringVar(&httpAddr, "http-addr", "", "the HTTP address: /metrics /healthz /readyz /.well-known/jwks.json /audit/ (default from the config, 127.0.0.1:8080)")
	return cmd
}

// applyDevAddrs puts the --kafka-addr and --http-addr flags, when set, in
// cfg. The embedded cluster listens on the loopback address only.
func applyDevAddrs(cfg *config.Config, kafkaAddr, httpAddr string) error {
	if kafkaAddr != "" {
		host, port, err := net.SplitHostPort(kafkaAddr)
		if err != nil {
			return fmt.Errorf("--kafka-addr %q: %w (want 127.0.0.1:PORT)", kafkaAddr, err)
		}
		if cfg.Kafka.Embedded {
			if host != "" && host != "127.0.0.1" && host != "localhost" {
				return fmt.Errorf("--kafka-addr %q: the embedded cluster listens on 127.0.0.1 only", kafkaAddr)
			}
			kafkaAddr = net.JoinHostPort("127.0.0.1", port)
		}
		cfg.Kafka.Brokers = []string{kafkaAddr}
	}
	if httpAddr != "" {
		if _, _, err := net.SplitHostPort(httpAddr); err != nil {
			return fmt.Errorf("--http-addr %q: %w (want HOST:PORT)", httpAddr, err)
		}
		cfg.HTTP.Addr = httpAddr
	}
	return nil
}

// saveDevAddrs writes cfg's Kafka and HTTP addresses into the config file
// at path, leaving everything else of it (comments included) as it is.
func saveDevAddrs(path string, cfg *config.Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: not a mapping", path)
	}
	root := doc.Content[0]
	var brokers yaml.Node
	if err := brokers.Encode(cfg.Kafka.Brokers); err != nil {
		return err
	}
	setYAML(mappingAt(root, "kafka"), "brokers", &brokers)
	setYAML(mappingAt(root, "http"), "addr", &yaml.Node{Kind: yaml.ScalarNode, Value: cfg.HTTP.Addr})
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("config: encode: %w", err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// mappingAt returns the mapping under key of m, added when missing.
func mappingAt(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.MappingNode {
			return m.Content[i+1]
		}
	}
	v := &yaml.Node{Kind: yaml.MappingNode}
	setYAML(m, key, v)
	return v
}

// setYAML sets key of the mapping m to v.
func setYAML(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// checkDevPorts fails, naming the flag that moves it, when the embedded
// cluster's or the HTTP address's port is taken.
func checkDevPorts(cfg *config.Config) error {
	var addrs [][2]string
	if cfg.Kafka.Embedded && len(cfg.Kafka.Brokers) > 0 {
		addrs = append(addrs, [2]string{cfg.Kafka.Brokers[0], "--kafka-addr"})
	}
	addrs = append(addrs, [2]string{cfg.HTTP.Addr, "--http-addr"})
	for _, a := range addrs {
		l, err := net.Listen("tcp", a[0])
		if err == nil {
			_ = l.Close()
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is in use: pick another with %s", a[0], a[1])
		}
		return fmt.Errorf("%s (%s): %w", a[0], a[1], err)
	}
	return nil
}

// devReady is what the banner shows.
type devReady struct {
	prog, dataFlag      string
	kafka               []string
	http, data, store   string
	auditor, passwords  string
	operators           string
	subjectID, subjName string
	from, to            string
}

func devBannerOf(g *globals, cfg *config.Config, svc *service, dataDir string) devReady {
	b := devReady{prog: shellQuote(os.Args[0]), kafka: svc.kafka.Brokers, http: svc.httpBase(), data: cfg.DataDir,
		store: redactDSN(cfg.Store.DSN), operators: "operators (loopback clients)"}
	if svc.guard.Configured(webauth.Operator) {
		b.operators = "operators (logins of " + cfg.HTTP.WebConfigFile + ")"
	}
	// The commands to paste start as this one was typed; under `go run`
	// the binary is in a build cache folder, and they are go run's too.
	if strings.Contains(filepath.ToSlash(os.Args[0]), "/go-build") {
		b.prog = "go run ./cmd/certless"
	}
	switch {
	case g.configPath != "":
		b.dataFlag = " --config " + shellQuote(g.configPath)
	case filepath.Clean(dataDir) != config.DefaultDataDir:
		b.dataFlag = " --data " + shellQuote(dataDir)
	}
	if len(cfg.HTTP.Auditors) > 0 {
		b.auditor = cfg.HTTP.Auditors[0]
		if p := filepath.Join(cfg.DataDir, devPasswordFile); fileExists(p) {
			b.passwords = p
		}
	}
	p := demoSubjects(records.Generate(devSeed, devPersons)).offender
	b.subjectID, b.subjName = p.IDNumber, p.Name
	today := time.Now().In(exchange.Beijing)
	b.from, b.to = today.Format(time.DateOnly), today.AddDate(0, 0, 1).Format(time.DateOnly)
	return b
}

// devBanner prints what runs where and the next commands to paste.
func devBanner(w io.Writer, b devReady) {
	c := b.prog + b.dataFlag
	audit := "auditor console (no auditor login configured: http.web_config_file, http.auditors)"
	switch {
	case b.passwords != "":
		audit = "auditor console: user " + b.auditor + ", password in " + b.passwords
	case b.auditor != "":
		audit = "auditor console: user " + b.auditor + " (http.web_config_file)"
	}
	fmt.Fprintf(w, `
certless dev is ready.

  Kafka (embedded)   %s
  HTTP               %s
    /metrics /healthz /readyz   %s
    /.well-known/jwks.json      the broker's public signing keys
    /audit/                     %s
  data folder        %s
  store              %s

Next, in another terminal:
  %s records sample
  %s request --as court-changchun --query criminal_record --subject %s --name %s
      (decision answered: has_criminal_record true)
  %s exchange status
  %s report --from %s --to %s

Ctrl-C stops it.

`, strings.Join(b.kafka, ", "), b.http, b.operators, audit, b.data, b.store,
		c, c, b.subjectID, b.subjName, c, c, b.from, b.to)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
