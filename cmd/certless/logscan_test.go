package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas/residentid"
)

// secret is one value no log may carry, and what kind it is (for the
// report; the value itself is never printed).
type secret struct{ kind, value string }

// dataSecrets are the secrets a data folder holds: the private bytes of
// every private JWK (d, as base64url, base64 and hex), the transparency
// log key, the subject-key secret, every PEM body, the web passwords, and
// the passwords of the DSNs in its configuration files.
func dataSecrets(t *testing.T, dir string) []secret {
	t.Helper()
	var out []secret
	add := func(kind, v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, secret{kind, v})
		}
	}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".key.json"):
			var jwk struct{ D string }
			if err := json.Unmarshal(b, &jwk); err != nil || jwk.D == "" {
				return fmt.Errorf("%s: no private JWK: %v", path, err)
			}
			d, err := base64.RawURLEncoding.DecodeString(jwk.D)
			if err != nil {
				return err
			}
			add("private JWK d", jwk.D)
			add("private JWK d (base64)", base64.StdEncoding.EncodeToString(d))
			add("private JWK d (hex)", hex.EncodeToString(d))
		case name == "log.key": // PRIVATE+KEY+<origin>+<hash>+<base64 key>
			parts := strings.SplitN(strings.TrimSpace(string(b)), "+", 5)
			if len(parts) != 5 {
				return fmt.Errorf("%s: not a note signer key", path)
			}
			add("transparency log key", parts[4])
		case name == "subject.key":
			add("subject key secret", string(b))
		case name == devPasswordFile:
			for _, line := range strings.Split(string(b), "\n") {
				if _, pass, ok := strings.Cut(line, " "); ok {
					add("web password", pass)
				}
			}
		case strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"):
			for _, m := range regexp.MustCompile(`postgres(?:ql)?://[^\s"']+`).FindAllString(string(b), -1) {
				if u, err := url.Parse(m); err == nil {
					if p, ok := u.User.Password(); ok {
						add("DSN password", p)
					}
				}
			}
		}
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			body := base64.StdEncoding.EncodeToString(blk.Bytes)
			for len(body) > 0 { // as a PEM file wraps it, 64 per line
				add("PEM body", body[:min(64, len(body))])
				body = body[min(64, len(body)):]
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envSecrets are the passwords of the test services the runs were given.
func envSecrets() []secret {
	var out []secret
	for _, k := range []string{"CERTLESS_TEST_POSTGRES"} {
		if u, err := url.Parse(os.Getenv(k)); err == nil {
			if p, ok := u.User.Password(); ok && p != "" {
				out = append(out, secret{"DSN password", p})
			}
		}
	}
	if p := os.Getenv("CERTLESS_TEST_KAFKA_ADMIN_PASSWORD"); p != "" {
		out = append(out, secret{"Kafka SASL password", p})
	}
	return out
}

// leakScanner finds the persons' ID numbers and names and the secrets in
// log text.
type leakScanner struct {
	ids     map[string]bool
	names   map[string]bool
	longest int // runes of the longest name
	secrets []secret
}

func newLeakScanner(secrets []secret, datasets ...*records.Dataset) *leakScanner {
	s := &leakScanner{ids: map[string]bool{}, names: map[string]bool{"张三": true}, longest: 2, secrets: secrets}
	for _, ds := range datasets {
		for _, p := range ds.Persons {
			s.ids[p.IDNumber] = true
			s.names[p.Name] = true
			s.longest = max(s.longest, len([]rune(p.Name)))
		}
	}
	return s
}

var dsnPassword = regexp.MustCompile(`postgres(?:ql)?://[^\s:/@"]+:([^\s@/"]+)@`)

// scan returns one finding per leak in text, naming the line and what
// leaked but never the leaked value.
func (s *leakScanner) scan(source, text string) []string {
	var found []string
	for n, line := range strings.Split(text, "\n") {
		where := fmt.Sprintf("%s:%d", source, n+1)
		// ID numbers: of the persons used, and any valid one (the bench
		// and the demo also ask about numbers of nobody).
		for _, run := range regexp.MustCompile(`[0-9]{17}[0-9Xx]*`).FindAllString(line, -1) {
			for i := 0; i+18 <= len(run); i++ {
				id := strings.ToUpper(run[i : i+18])
				if s.ids[id] || residentid.Validate(id) == nil {
					found = append(found, where+": an ID number")
				}
			}
		}
		// Names: any run of Han characters holding one.
		var han []rune
		flush := func() {
			for i := range han {
				for l := 2; l <= s.longest && i+l <= len(han); l++ {
					if s.names[string(han[i:i+l])] {
						found = append(found, where+": a name")
					}
				}
			}
			han = han[:0]
		}
		for _, r := range line {
			if unicode.Is(unicode.Han, r) {
				han = append(han, r)
			} else {
				flush()
			}
		}
		flush()
		for _, sec := range s.secrets {
			// A short password (the test PostgreSQL's is its user name) is
			// looked for where it would stand in a DSN or a key=value.
			if (len(sec.value) >= 12 && strings.Contains(line, sec.value)) ||
				strings.Contains(line, ":"+sec.value+"@") || strings.Contains(line, "password="+sec.value) {
				found = append(found, where+": "+sec.kind)
			}
		}
		for _, m := range dsnPassword.FindAllStringSubmatch(line, -1) {
			if m[1] != "xxxxx" { // redactDSN's mark
				found = append(found, where+": a DSN with its password")
			}
		}
	}
	return found
}

// logLevels counts the lines of each level in console (dev, demo, bench)
// or JSON (serve) zap output.
func logLevels(text string) map[string]int {
	levels := map[string]int{}
	ansi := regexp.MustCompile("\x1b\\[[0-9;]*m")
	jsonLevel := regexp.MustCompile(`^\{"level":"([a-z]+)"`) // zap's first key
	for _, line := range strings.Split(text, "\n") {
		l := ""
		if m := jsonLevel.FindStringSubmatch(line); m != nil {
			l = m[1]
		} else if f := strings.Split(ansi.ReplaceAllString(line, ""), "\t"); len(f) > 2 {
			l = strings.ToLower(f[1])
		}
		switch l {
		case "debug", "info", "warn", "error", "dpanic", "panic", "fatal":
			levels[l]++
		}
	}
	return levels
}

// TestRealKafkaLogsHoldNoSecrets runs `certless demo` and a short
// `certless bench` (serve mode, on the real Kafka and PostgreSQL) at log
// level debug — which logs everything info, warn and error would, and
// more — and scans every line they and the bench's broker processes
// logged for the persons' ID numbers and names, the private key bytes and
// the passwords: none is there. The logs are not empty: each has its
// lines, debug ones among them, and one per handled message.
func TestRealKafkaLogsHoldNoSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	admin := testenv.PostgresAdminDSN(t)
	bin := certlessBinary(ctx, t)
	const benchPersons, benchRequests = 3000, 300
	runLogged := func(what string, args ...string) (stdout, stderr string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), config.EnvLogLevel+"=debug")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", what, err, out.String(), tail(errb.Bytes(), 3000))
		}
		t.Logf("%s ran in %.1fs", what, time.Since(start).Seconds())
		return out.String(), errb.String()
	}

	demoDir := t.TempDir()
	demoOut, demoLog := runLogged("certless demo", "--data", demoDir, "demo")
	benchDir := t.TempDir()
	benchOut, benchLog := runLogged("certless bench", "--data", benchDir, "bench", "--kafka", brokers, "--postgres", admin,
		"--requests", strconv.Itoa(benchRequests), "--persons", strconv.Itoa(benchPersons), "--in-flight", "50", "--verify", "10")
	serveLog := string(mustRead(t, filepath.Join(benchDir, "serve-0.log")))

	type logOf struct {
		name, text string
		isLog      bool
		handled    int // "message handled" lines it must have at least
	}
	logs := []logOf{
		{"demo log", demoLog, true, 20},
		{"bench log", benchLog, true, 0},
		{"bench serve-0.log", serveLog, true, 2 * benchRequests}, // the main and the half-load run
		{"demo output", demoOut, false, 0},
		{"bench output", benchOut, false, 0},
	}
	secrets := append(append(dataSecrets(t, demoDir), dataSecrets(t, benchDir)...), envSecrets()...)
	kinds := map[string]int{}
	for _, s := range secrets {
		kinds[s.kind]++
	}
	// Both folders' keys (broker, police and six agencies each), log key,
	// subject key, web password; the DSN passwords.
	for kind, least := range map[string]int{"private JWK d": 16, "transparency log key": 2, "subject key secret": 2, "web password": 2, "DSN password": 1} {
		if kinds[kind] < least {
			t.Fatalf("%d of %q to look for, want at least %d: the scan would prove little (%v)", kinds[kind], kind, least, kinds)
		}
	}
	scanner := newLeakScanner(secrets, records.Generate(devSeed, devPersons), records.Generate(devSeed, benchPersons))
	total, leaks := 0, 0
	for _, l := range logs {
		lines := strings.Count(l.text, "\n")
		levels := logLevels(l.text)
		handled := strings.Count(l.text, "message handled")
		total += lines
		t.Logf("%s: %d lines, %d bytes, levels %v, %d message handled", l.name, lines, len(l.text), levels, handled)
		switch {
		case !l.isLog:
		case lines < 20 || levels["info"] == 0:
			t.Errorf("%s: %d lines, levels %v: too little logged for the scan to mean anything", l.name, lines, levels)
		case l.handled > 0 && levels["debug"] == 0:
			t.Errorf("%s: no debug line: the run did not log at debug", l.name)
		}
		if handled < l.handled {
			t.Errorf("%s: %d message handled lines, want at least %d (one per message at debug)", l.name, handled, l.handled)
		}
		found := scanner.scan(l.name, l.text)
		leaks += len(found)
		for i, f := range found {
			if i == 20 {
				t.Errorf("… and %d more", len(found)-20)
				break
			}
			t.Errorf("leak: %s", f)
		}
	}
	t.Logf("scanned %d lines for every valid ID number, %d known ones, %d names and %d secrets %v", total, len(scanner.ids), len(scanner.names), len(secrets), kinds)
	line := fmt.Sprintf("secrets in logs: %d lines of demo and bench at debug, %d leaks", total, leaks)
	t.Log(line)
}

// TestServeRefusesReadableKeyFile: `certless serve` does not start when the
// broker's private key file is readable by group or others, and says why
// and which file.
func TestServeRefusesReadableKeyFile(t *testing.T) {
	secretFiles := map[string]func(cfg *config.Config) string{
		"broker key": func(cfg *config.Config) string {
			k, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return keys.PrivatePath(cfg.KeysDir, cfg.BrokerID, k.KeyID)
		},
		"log key": func(cfg *config.Config) string { return cfg.LogKeyFile() },
		"subject key": func(cfg *config.Config) string {
			// Made at the first start, as serve does.
			if _, err := subjectSecret(cfg.KeysDir); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(cfg.KeysDir, "subject.key")
		},
	}
	for _, name := range slices.Sorted(maps.Keys(secretFiles)) {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
			t.Run(name+" "+mode.String(), func(t *testing.T) {
				ctx := context.Background()
				dir := t.TempDir()
				cfg, err := ensureDevData(ctx, dir, zap.NewNop())
				if err != nil {
					t.Fatal(err)
				}
				path := secretFiles[name](cfg)
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				code, _, stderr := runCLI(t, "--data", dir, "serve")
				if code != exitFailure || !strings.Contains(stderr, "must not be readable by group or others (chmod 600)") || !strings.Contains(stderr, path) {
					t.Fatalf("serve with a %v %s file: exit %d\n%s", mode, name, code, stderr)
				}
				if strings.Contains(stderr, "keys generate") || strings.Contains(stderr, "log keygen") {
					t.Errorf("the refusal advises making a key, not fixing its mode:\n%s", lastLine(stderr))
				}
				t.Logf("%s", lastLine(stderr))
				if strings.Contains(stderr, "consuming") {
					t.Fatalf("the broker started:\n%s", stderr)
				}
			})
		}
	}
}

// TestLeakScannerFindsPlantedLeaks: the scan of
// TestRealKafkaLogsHoldNoSecrets finds each kind of leak, in console and
// JSON lines, and passes over what is no leak.
func TestLeakScannerFindsPlantedLeaks(t *testing.T) {
	dir := t.TempDir()
	if _, err := ensureDevData(context.Background(), dir, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	secrets := dataSecrets(t, dir)
	ds := records.Generate(devSeed, 50)
	p := ds.Persons[7]
	var d, logKey, web string
	for _, s := range secrets {
		switch s.kind {
		case "private JWK d (hex)":
			d = s.value
		case "transparency log key":
			logKey = s.value
		case "web password":
			web = s.value
		}
	}
	nobody := residentid.Make("110101", time.Date(1990, 3, 7, 0, 0, 0, 0, time.UTC), 123)
	s := newLeakScanner(append(secrets, secret{"DSN password", "certless"}), ds)
	for _, c := range []struct {
		line, want string
	}{
		{"12:00:00.000\tINFO\tmessage handled\t{\"subject\": \"" + p.IDNumber + "\"}", "an ID number"},
		{`{"level":"warn","msg":"x","offset":"9` + nobody + `1"}`, "an ID number"},
		{"12:00:00.000\tDEBUG\tanswer\t{\"name\": \"姓名" + p.Name + "先生\"}", "a name"},
		{`{"level":"debug","key":"` + d + `"}`, "private JWK d (hex)"},
		{"signing with " + logKey, "transparency log key"},
		{"login auditor " + web, "web password"},
		{`{"level":"info","dsn":"postgres://certless:certless@127.0.0.1:15432/x"}`, "DSN password"},
		{`{"level":"info","dsn":"postgres://reader:s3cr3t@db/x"}`, "a DSN with its password"},
		{`{"level":"info","dsn":"postgres://certless:xxxxx@127.0.0.1:15432/x","offset":123456789012345678,"digest":"sha256:de145cebc9b9ea7cfd7ff155da94ac98ce16dfada02fc855430788e59f87b61f","agency":"吉林省公安厅"}`, ""},
	} {
		found := s.scan("test", c.line)
		if c.want == "" {
			if len(found) != 0 {
				t.Errorf("%q: found %v, want nothing", c.line, found)
			}
			continue
		}
		if !slices.ContainsFunc(found, func(f string) bool { return strings.HasSuffix(f, ": "+c.want) }) {
			t.Errorf("%q: found %v, want %q", c.line, found, c.want)
		}
		for _, f := range found {
			for _, v := range []string{p.IDNumber, p.Name, d, logKey, web, nobody, "s3cr3t"} {
				if strings.Contains(f, v) {
					t.Errorf("a finding repeats the leaked value: %q", f)
				}
			}
		}
	}
	if got := logLevels("{\"level\":\"info\",\"msg\":\"record source ready\",\"level\":\"province\"}\n12:00:00.000\t\x1b[35mDEBUG\x1b[0m\tx\t{}\n"); got["info"] != 1 || got["debug"] != 1 || len(got) != 2 {
		t.Errorf("logLevels = %v", got)
	}
}
