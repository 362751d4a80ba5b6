package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// TestAgencyDockOnSecureKafka docks a county agency through the CLI
// against the real Kafka's SASL_SSL listener (as its admin, the password
// from an environment variable), then checks as that agency, with the
// password dock wrote, that it may use exactly its own topics and groups;
// that docking again changes nothing; and that suspend removes its access
// and resume restores it.
func TestAgencyDockOnSecureKafka(t *testing.T) {
	s := testenv.SecureKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	data, prefix, admin := secureDevData(ctx, t, s, nil)

	id := "court-jian-" + testenv.Random(3)
	topics := broker.Topics{Prefix: prefix}
	acc := bkafka.AgencyAccess{Principal: id, RequestsTopic: topics.Requests(id), ReceiptsTopic: topics.Receipts(id), GroupPrefix: id + ".", ReadTopics: []string{topics.Batches(id)}}
	other := topics.Requests("edu-jian") // another agency's requests topic
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := bkafka.RevokeAgencyAccess(ctx, admin, acc); err != nil {
			t.Logf("cleanup ACLs: %v", err)
		}
		if err := bkafka.DeleteSCRAM(ctx, admin, id); err != nil {
			t.Logf("cleanup SCRAM user: %v", err)
		}
		tr, err := admin.Transport()
		if err != nil {
			return
		}
		defer tr.CloseIdleConnections()
		c := &kafkago.Client{Addr: kafkago.TCP(s.Addr), Transport: tr, Timeout: 20 * time.Second}
		if _, err := c.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{acc.RequestsTopic, acc.ReceiptsTopic, other}}); err != nil {
			t.Logf("cleanup topics: %v", err)
		}
	})

	_, jwksFile := agencyKeyFile(t, id)
	pwFile := filepath.Join(t.TempDir(), id+".password")
	agency := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"--data", data, "agency", "--actor", "ops-test"}, args...)...)
	}
	dock := []string{"dock", "--id", id, "--level", "county", "--region", "220582",
		"--name", "Ji'an People's Court", "--kind", "court", "--jwks", jwksFile, "--password-file", pwFile}

	code, out, errOut := agency(dock...)
	if code != exitOK {
		t.Fatalf("dock: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("dock:\n%s", out)
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	pw := readPassword(t, pwFile)
	if strings.Contains(out+errOut, pw) {
		t.Errorf("dock printed the password it wrote to --password-file")
	}
	me := bkafka.Config{
		Brokers: []string{s.Addr},
		TLS:     bkafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:    bkafka.SASL{Mechanism: bkafka.MechanismSCRAMSHA512, Username: id, Password: pw},
	}

	// The credential and ACLs reach the broker through the metadata log.
	testenv.WaitProduce(ctx, t, me, acc.RequestsTopic, true)

	t.Run("produces to its requests", func(t *testing.T) {
		p, err := bkafka.NewProducer(me, bkafka.ProducerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Produce(ctx, bkafka.Message{Topic: acc.RequestsTopic, Key: []byte("k"), Value: []byte("request")}); err != nil {
			t.Fatalf("produce to %s: %v", acc.RequestsTopic, err)
		}
	})

	t.Run("consumes its receipts in group <id>.x", func(t *testing.T) {
		bureau, err := bkafka.NewProducer(admin, bkafka.ProducerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer bureau.Close()
		if err := bureau.Produce(ctx, bkafka.Message{Topic: acc.ReceiptsTopic, Key: []byte("r"), Value: []byte("receipt")}); err != nil {
			t.Fatalf("admin produces a receipt: %v", err)
		}
		c, err := bkafka.NewConsumer(me, bkafka.ConsumerOptions{GroupID: id + ".x", Topics: []string{acc.ReceiptsTopic}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		m, err := c.Fetch(fctx)
		if err != nil {
			t.Fatalf("fetch %s as %s in group %s.x: %v", acc.ReceiptsTopic, id, id, err)
		}
		if string(m.Value) != "receipt" {
			t.Fatalf("read %q", m.Value)
		}
		if err := c.Commit(fctx, m); err != nil {
			t.Fatalf("commit in group %s.x: %v", id, err)
		}
	})

	t.Run("cannot produce to another agency's requests", func(t *testing.T) {
		if err := bkafka.EnsureTopics(ctx, admin, bkafka.TopicSpec{Name: other, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		err := testenv.ProduceDirect(ctx, me, other)
		if !errors.Is(err, kafkago.TopicAuthorizationFailed) {
			t.Fatalf("produce to %s: %v, want %v", other, err, kafkago.TopicAuthorizationFailed)
		}
	})

	want := len(acc.Bindings())
	testenv.WaitACLs(ctx, t, admin, id, want)

	t.Run("dock again changes nothing", func(t *testing.T) {
		code, out, errOut := agency(dock...)
		if code != exitOK {
			t.Fatalf("dock again: exit %d\n%s\n%s", code, out, errOut)
		}
		if !strings.Contains(out, "unchanged") || !strings.Contains(out, "kept") {
			t.Errorf("dock again:\n%s", out)
		}
		if got := readPassword(t, pwFile); got != pw {
			t.Errorf("dock again changed the password file")
		}
		testenv.WaitACLs(ctx, t, admin, id, want)
		if err := bkafka.Ping(ctx, me); err != nil {
			t.Errorf("the old password no longer works: %v", err)
		}
	})

	t.Run("suspend removes access, resume restores it", func(t *testing.T) {
		code, out, errOut := agency("suspend", id, "--reason", "audit")
		if code != exitOK {
			t.Fatalf("suspend: exit %d\n%s\n%s", code, out, errOut)
		}
		testenv.WaitACLs(ctx, t, admin, id, 0)
		testenv.WaitProduce(ctx, t, me, acc.RequestsTopic, false)

		// Docking a suspended agency again does not give it ACLs back.
		if code, out, errOut := agency(dock...); code != exitOK {
			t.Fatalf("dock while suspended: exit %d\n%s\n%s", code, out, errOut)
		}
		testenv.WaitACLs(ctx, t, admin, id, 0)

		code, out, errOut = agency("resume", id)
		if code != exitOK {
			t.Fatalf("resume: exit %d\n%s\n%s", code, out, errOut)
		}
		testenv.WaitACLs(ctx, t, admin, id, want)
		testenv.WaitProduce(ctx, t, me, acc.RequestsTopic, true)
	})

	t.Run("rotate-password replaces the password", func(t *testing.T) {
		code, out, errOut := agency(append(dock, "--rotate-password")...)
		if code != exitOK {
			t.Fatalf("dock --rotate-password: exit %d\n%s\n%s", code, out, errOut)
		}
		pw2 := readPassword(t, pwFile)
		if pw2 == pw || len(pw2) != 43 {
			t.Fatalf("rotated password: same as before %v, length %d (want 43)", pw2 == pw, len(pw2))
		}
		me2 := me
		me2.SASL.Password = pw2
		testenv.WaitProduce(ctx, t, me2, acc.RequestsTopic, true)
	})
}

// TestAgencyDockPrintsPasswordOnce: without --password-file the new
// password is printed once on stdout, and it works; docking again does
// not print it again.
func TestAgencyDockPrintsPasswordOnce(t *testing.T) {
	s := testenv.SecureKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, prefix, admin := secureDevData(ctx, t, s, nil)
	id := "notary-jian-" + testenv.Random(3)
	topics := broker.Topics{Prefix: prefix}
	acc := bkafka.AgencyAccess{Principal: id, RequestsTopic: topics.Requests(id), ReceiptsTopic: topics.Receipts(id), GroupPrefix: id + ".", ReadTopics: []string{topics.Batches(id)}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = bkafka.RevokeAgencyAccess(ctx, admin, acc)
		_ = bkafka.DeleteSCRAM(ctx, admin, id)
		if tr, err := admin.Transport(); err == nil {
			defer tr.CloseIdleConnections()
			c := &kafkago.Client{Addr: kafkago.TCP(s.Addr), Transport: tr, Timeout: 20 * time.Second}
			_, _ = c.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{acc.RequestsTopic, acc.ReceiptsTopic}})
		}
	})
	k, err := keys.Generate(id, "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS([]keys.Public{k.Public})
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	dock := []string{"--data", data, "agency", "dock", "--id", id, "--level", "county", "--region", "220582",
		"--name", "Ji'an Notary Office", "--kind", "notary", "--jwks", jwksFile}
	code, out, errOut := runCLI(t, dock...)
	if code != exitOK {
		t.Fatalf("dock: exit %d\n%s\n%s", code, out, errOut)
	}
	_, after, ok := strings.Cut(out, "shown this once:\n")
	pw, _, _ := strings.Cut(after, "\n")
	if !ok || len(pw) != 43 {
		t.Fatalf("dock did not print a 43-character password:\n%s", out)
	}
	testenv.WaitProduce(ctx, t, bkafka.Config{
		Brokers: []string{s.Addr},
		TLS:     bkafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:    bkafka.SASL{Mechanism: bkafka.MechanismSCRAMSHA512, Username: id, Password: pw},
	}, acc.RequestsTopic, true)
	code, out, errOut = runCLI(t, dock...)
	if code != exitOK || strings.Contains(out, pw) || !strings.Contains(out, "kept") {
		t.Fatalf("dock again: exit %d, password printed again %v\n%s\n%s", code, strings.Contains(out, pw), out, errOut)
	}
}

// TestAgencyRotateKeyCLI: rotate-key replaces the JWKS once; the same set
// again records nothing. On the embedded dev cluster dock and suspend
// leave Kafka alone, and --password-file then is a usage error.
func TestAgencyRotateKeyCLI(t *testing.T) {
	data := t.TempDir()
	if _, err := ensureDevData(context.Background(), data, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	agency := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"--data", data, "agency", "--actor", "ops-test"}, args...)...)
	}
	k, err := keys.Generate("edu-jian", "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS([]keys.Public{k.Public})
	jwksFile := filepath.Join(t.TempDir(), "edu-jian.jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := agency("rotate-key", "edu-jian"); code != exitUsage {
		t.Errorf("rotate-key without --jwks: exit %d", code)
	}
	code, out, errOut := agency("rotate-key", "edu-jian", "--jwks", jwksFile)
	if code != exitOK || !strings.Contains(out, "edu-jian key_rotated by ops-test") {
		t.Fatalf("rotate-key: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := agency("rotate-key", "edu-jian", "--jwks", jwksFile); code != exitOK || !strings.Contains(out, "unchanged") {
		t.Errorf("rotate-key again: exit %d\n%s", code, out)
	}
	code, out, _ = agency("show", "edu-jian")
	if code != exitOK || !strings.Contains(out, k.Public.KID()) {
		t.Errorf("show after rotate-key lacks %s:\n%s", k.Public.KID(), out)
	}
	if code, _, _ := agency("rotate-key", "no-such", "--jwks", jwksFile); code == exitOK {
		t.Errorf("rotate-key of an unknown agency succeeded")
	}
	if code, out, _ := agency("suspend", "edu-jian", "--reason", "test"); code != exitOK || !strings.Contains(out, "embedded dev cluster") {
		t.Errorf("suspend on the embedded cluster: exit %d\n%s", code, out)
	}
	ck, err := keys.Generate("court-jian", "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	cjwks, _ := keys.MarshalJWKS([]keys.Public{ck.Public})
	cjwksFile := filepath.Join(t.TempDir(), "court-jian.jwks.json")
	if err := os.WriteFile(cjwksFile, cjwks, 0o600); err != nil {
		t.Fatal(err)
	}
	dock := []string{"dock", "--id", "court-jian", "--level", "county", "--region", "220582", "--name", "Ji'an Court",
		"--kind", "court", "--jwks", cjwksFile}
	if code, _, errOut := agency(append(dock, "--password-file", filepath.Join(t.TempDir(), "pw"))...); code != exitUsage {
		t.Errorf("dock --password-file on the embedded cluster: exit %d %s", code, errOut)
	}
	if code, out, _ := agency("show", "court-jian"); code == exitOK {
		t.Errorf("a refused dock recorded the agency:\n%s", out)
	}
	if code, out, errOut := agency(append(dock, "--no-kafka")...); code != exitOK || !strings.Contains(out, "court-jian docked") || strings.Contains(out, "topics") {
		t.Errorf("dock --no-kafka: exit %d\n%s\n%s", code, out, errOut)
	}
}

func readPassword(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		t.Fatalf("%s is empty", path)
	}
	return pw
}

// agencyKeyFile generates a signing key for agency id, outside any keys
// folder, and writes its public JWKS to a file for `agency dock --jwks`.
func agencyKeyFile(t *testing.T, id string) (*keys.Private, string) {
	t.Helper()
	k, err := keys.Generate(id, "", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := keys.MarshalJWKS([]keys.Public{k.Public})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), id+".jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, path
}

// TestAgencyDockDataOwnerReadsDisputes: a police data owner docked on the
// secured cluster gets, beside an agency's ACLs (its batches topic
// included), read access to the disputes forwarded to it, and reads a
// message on both with its own credential.
func TestAgencyDockDataOwnerReadsDisputes(t *testing.T) {
	s := testenv.SecureKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner := "police-" + testenv.Random(3)
	data, prefix, admin := secureDevData(ctx, t, s, func(c *config.Config) { c.DataOwners = append(c.DataOwners, owner) })
	topics := broker.Topics{Prefix: prefix}
	disputes := topics.Disputes(owner)
	acc := bkafka.AgencyAccess{Principal: owner, RequestsTopic: topics.Requests(owner), ReceiptsTopic: topics.Receipts(owner),
		GroupPrefix: owner + ".", ReadTopics: []string{topics.Batches(owner), disputes}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = bkafka.RevokeAgencyAccess(ctx, admin, acc)
		_ = bkafka.DeleteSCRAM(ctx, admin, owner)
	})
	if err := bkafka.EnsureTopics(ctx, admin, bkafka.TopicSpec{Name: disputes, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	_, jwksFile := agencyKeyFile(t, owner)
	pwFile := filepath.Join(t.TempDir(), owner+".password")
	code, out, errOut := runCLI(t, "--data", data, "agency", "--actor", "ops-test", "dock", "--id", owner, "--level", "province",
		"--region", "220000", "--name", "Jilin Provincial Public Security Department", "--kind", "police", "--jwks", jwksFile, "--password-file", pwFile)
	if code != exitOK {
		t.Fatalf("dock the data owner: %d\n%s%s", code, out, errOut)
	}
	testenv.WaitACLs(ctx, t, admin, owner, len(acc.Bindings()))
	me := bkafka.Config{Brokers: []string{s.Addr}, TLS: bkafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL: bkafka.SASL{Mechanism: bkafka.MechanismSCRAMSHA512, Username: owner, Password: readPassword(t, pwFile)}}
	batches := topics.Batches(owner)
	if err := bkafka.EnsureTopics(ctx, admin, bkafka.TopicSpec{Name: batches, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{disputes, batches} {
		testenv.Eventually(ctx, t, "the data owner reads "+topic, 30*time.Second, func() error {
			tail, err := client.TailTopic(ctx, me, topic)
			if err != nil {
				return err
			}
			defer tail.Close()
			p, err := bkafka.NewProducer(admin, bkafka.ProducerOptions{})
			if err != nil {
				return err
			}
			defer p.Close()
			if err := p.Produce(ctx, bkafka.Message{Topic: topic, Key: []byte("d"), Value: []byte("a message for " + owner)}); err != nil {
				return err
			}
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			rec, err := tail.Next(rctx)
			if err != nil {
				return err
			}
			if string(rec.Value) != "a message for "+owner {
				return fmt.Errorf("read %q", rec.Value)
			}
			return nil
		})
	}
}

// secureDevData is a dev data folder whose configuration reaches the
// secured listener as its administrator (the password from an environment
// variable), with a fresh topic prefix; edit, when set, changes the
// configuration before it is written. It returns the folder, the prefix
// and the administrator's Kafka configuration.
func secureDevData(ctx context.Context, t *testing.T, s testenv.SecureListener, edit func(*config.Config)) (string, string, bkafka.Config) {
	t.Helper()
	data := t.TempDir()
	cfg, err := ensureDevData(ctx, data, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	const pwEnv = "CERTLESS_TEST_SECURE_ADMIN_PASSWORD"
	t.Setenv(pwEnv, s.AdminPassword)
	t.Setenv(config.EnvKafkaBrokers, "")
	prefix := "t" + testenv.Random(4) + "."
	cfg.Kafka = config.Kafka{
		Brokers: []string{s.Addr}, TopicPrefix: prefix, Partitions: 1, ReplicationFactor: 1,
		TLS:  &config.TLS{Enabled: true, CAFile: s.CAFile},
		SASL: &config.SASL{Mechanism: bkafka.MechanismSCRAMSHA512, Username: s.AdminUser, PasswordEnv: pwEnv},
	}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Write(filepath.Join(data, config.FileName)); err != nil {
		t.Fatal(err)
	}
	admin := bkafka.Config{
		Brokers: []string{s.Addr},
		TLS:     bkafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:    bkafka.SASL{Mechanism: bkafka.MechanismSCRAMSHA512, Username: s.AdminUser, Password: s.AdminPassword},
	}
	return data, prefix, admin
}
