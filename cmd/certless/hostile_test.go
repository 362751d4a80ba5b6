package main

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// hostileOutcome is where a message ends: a signed receipt to the sender
// (Decision and Reason) or a dead letter (Reason).
type hostileOutcome struct {
	DeadLetter       bool
	Decision, Reason string
}

func (o hostileOutcome) String() string {
	if o.DeadLetter {
		return "dead_letter/" + o.Reason
	}
	if o.Reason == "" {
		return o.Decision
	}
	return o.Decision + "/" + o.Reason
}

// hostileCase is one entry of the catalogue: bytes sent on the request
// topic of agency, and where the contract says they end.
type hostileCase struct {
	name   string
	agency string // whose request topic carries it; a receipt goes to its receipts topic
	value  []byte
	want   hostileOutcome
}

// hostileSeen is what the broker did with one message.
type hostileSeen struct {
	digest string
	hostileOutcome
	agency, detail string // receipts topic it came on; the receipt's or dead letter's detail
}

// TestRealKafkaHostileCatalogue sends, through one running broker on the
// real Kafka and PostgreSQL, a catalogue of hostile messages — forged and
// confused signatures, key and kid tricks, header parameters Certless must
// not trust, other serialisations, replay and time-window games, oversized,
// deep, duplicate, non-UTF-8 and mistyped JSON, bad ID numbers, SQL
// metacharacters in every string field, requests the agreements refuse and
// feedback about other agencies' messages — and checks each ends exactly
// where the contract says: a signed receipt with its reason to an
// authenticated sender, a dead letter with its reason otherwise. Then every
// agency's ordinary request is answered as the data says, the records
// tables are intact, consumer lag is 0, and the broker's goroutines and
// heap are back within bounds.
func TestRealKafkaHostileCatalogue(t *testing.T) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cfg, recordsAdmin := realConfigAndRecords(ctx, t)
	cfgPath := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)

	// Keys the broker loads at start: a court key revoked an hour ago, and
	// an ES256 key of Shulan's civil affairs bureau.
	revoked, err := keys.GenerateInDir(cfg.KeysDir, "court-changchun", "k00000000-revoked", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	revokedAt := now.Add(-time.Hour)
	if err := keys.Revoke(cfg.KeysDir, revoked.KID(), revokedAt); err != nil {
		t.Fatal(err)
	}
	shulanES, err := keys.GenerateInDir(cfg.KeysDir, "civil-affairs-shulan", "es256", keys.ES256)
	if err != nil {
		t.Fatal(err)
	}

	// A batch of the periodic exchange for Baicheng, before the broker
	// starts, as TestRealKafkaExchangeRun builds one.
	batchTopic := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}.Batches("social-security-baicheng")
	if err := bkafka.EnsureTopics(ctx, kafkaConfig(cfg.Kafka), bkafka.TopicSpec{Name: batchTopic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "--config", cfgPath, "exchange", "run", "--agreement", "social-security-baicheng/records",
		"--schedule", "daily-cancellations", "--period", "2026-03-01T12:00:00+08:00")
	m := regexp.MustCompile(`batch ([0-9A-Z]{26}): `).FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("exchange run: exit %d\n%s%s", code, out, errOut)
	}
	batchID := m[1]

	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0", directoryPoll: 100 * time.Millisecond, keysPoll: agreementPoll})
	// The agreements the sample ones cannot show: a suspended one, one
	// outside its service hours now, one whose daily quota is used up.
	if err := demoAgreements(ctx, cfg, svc, time.Now()); err != nil {
		t.Fatal(err)
	}
	agencyCLI := func(args ...string) {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--config", cfgPath, "agency", "--actor", "ops-test", "--no-kafka"}, args...)...)
		if code != exitOK {
			t.Fatalf("agency %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	suspended := func(id string) func() bool {
		return func() bool { a, ok := svc.docking.Docked(id); return ok && a.Suspended }
	}
	agencyCLI("suspend", "social-security-baicheng", "--reason", "hostile catalogue")
	waitFor(ctx, t, "the broker sees Baicheng suspended", 20*time.Second, suspended("social-security-baicheng"))

	ds := records.Generate(devSeed, devPersons)
	pick := demoSubjects(ds)
	signer := func(agency string) *keys.Private { return signingKey(t, cfg, agency) }
	court, edu, notary := signer("court-changchun"), signer("edu-jian"), signer("notary-dunhua")
	pension := signer("social-security-baicheng")

	// Agency clients, and a tail of every receipts topic and of the dead
	// letters, all started before anything is sent.
	agencies := []string{"court-changchun", "edu-jian", "civil-affairs-jilin", "notary-dunhua", "social-security-baicheng", "civil-affairs-shulan"}
	clients := map[string]*client.Client{}
	for _, a := range agencies {
		c, err := newAgencyClient(ctx, cfg, a, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Kafka = svc.kafka
		t.Cleanup(func() { c.Close() })
		clients[a] = c
	}
	seenCtx, stopSeen := context.WithCancel(ctx)
	defer stopSeen()
	seen := hostileWatch(seenCtx, t, svc, clients)

	b64 := base64.RawURLEncoding.EncodeToString
	subj := func(id, name string) string {
		b, _ := json.Marshal(schemas.Subject{IDNumber: id, Name: name})
		return string(b)
	}
	person := func(p records.Person) string { return subj(p.IDNumber, p.Name) }
	identity := func(s string) string { return `{"query":"identity","subject":` + s + `}` }
	payload := func(agency, basis, body string) envelope.Payload {
		return envelope.Payload{Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: agency, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			Purpose: envelope.Purpose{Basis: basis, CaseRef: "H-2026-001"}, Body: json.RawMessage(body)}
	}
	encode := func(p envelope.Payload) string {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// courtJSON is an ordinary court identity request, as JSON text for
	// the cases that change its bytes.
	courtJSON := func() string {
		return encode(payload("court-changchun", "case-handling", identity(person(pick.clean))))
	}
	sign := func(k *keys.Private, p envelope.Payload) []byte {
		b, err := envelope.Sign(k, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	signText := func(k *keys.Private, payloadJSON string) []byte {
		b, err := envelope.SignBytes(k, []byte(payloadJSON))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// signHeader signs payloadJSON under a protected header given as text,
	// with an Ed25519 key: every byte of the header is the case's.
	signHeader := func(k *keys.Private, header, payloadJSON string) []byte {
		input := b64([]byte(header)) + "." + b64([]byte(payloadJSON))
		return []byte(input + "." + b64(ed25519.Sign(k.Signer.(ed25519.PrivateKey), []byte(input))))
	}
	jsonText := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	hdr := func(alg, kid string, extra ...string) string {
		h := `{"alg":` + jsonText(alg) + `,"kid":` + jsonText(kid)
		for _, e := range extra {
			h += "," + e
		}
		return h + "}"
	}
	with := func(s, old, repl string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in %s", old, s)
		}
		return strings.Replace(s, old, repl, 1)
	}
	courtTime := func(issued, expires time.Time) []byte {
		p := payload("court-changchun", "case-handling", identity(person(pick.clean)))
		p.IssuedAt, p.ExpiresAt = issued, expires
		return sign(court, p)
	}
	idWith := func(region, birth, seq string) string {
		s := region + birth + seq
		return s + string(residentid.Checksum(s))
	}

	// Before the catalogue: an answered court request, whose id the replay
	// reuses and whose receipt other agencies' feedback names; and a valid
	// ES256 request of Shulan, whose high-S twin the catalogue sends.
	original := payload("court-changchun", "case-handling", identity(person(pick.clean)))
	originalRaw := sign(court, original)
	first := hostileRequest(ctx, t, clients["court-changchun"], originalRaw)
	if first.Decision != schemas.DecisionAnswered {
		t.Fatalf("the court's first request: %s/%s %s", first.Decision, first.Reason, first.Detail)
	}
	courtReceipt := schemas.MessageRef{ID: first.Envelope.ID, Digest: envelope.DigestOf(first.Raw)}
	shulanGood := sign(shulanES, payload("civil-affairs-shulan", "marriage-registration", identity(person(pick.shulan))))
	if got := hostileRequest(ctx, t, clients["civil-affairs-shulan"], shulanGood); got.Decision != schemas.DecisionAnswered {
		t.Fatalf("Shulan's ES256 request: %s/%s %s", got.Decision, got.Reason, got.Detail)
	}
	b, ok, err := svc.batches.ByID(ctx, batchID)
	if err != nil || !ok || b.Recipient != "social-security-baicheng" {
		t.Fatalf("batch %s: %+v %v %v", batchID, b.Recipient, ok, err)
	}
	batchRef := schemas.MessageRef{ID: batchID, Digest: envelope.DigestOf(b.Manifest)}

	feedbackMsg := func(k *keys.Private, typ string, body any) []byte {
		raw, _ := json.Marshal(body)
		p := payload(k.Agency, "case-handling", string(raw))
		p.Type = typ
		return sign(k, p)
	}
	stranger, err := keys.Generate("court-changchun", "unregistered", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := keys.Generate("court-changchun", court.KeyID, keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK, err := attacker.Public.JWK().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	courtPub, err := court.Public.JWK().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	jwksFile, err := os.ReadFile(keys.JWKSPath(cfg.KeysDir, "court-changchun"))
	if err != nil {
		t.Fatal(err)
	}
	police := signer(policeOwner)
	hs256 := func(secret []byte) []byte {
		input := b64([]byte(hdr("HS256", court.KID()))) + "." + b64([]byte(courtJSON()))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return []byte(input + "." + b64(mac.Sum(nil)))
	}
	forged := sign(court, payload("court-changchun", "case-handling", identity(person(pick.offender))))
	forged = append(forged[:len(forged)-6:len(forged)-6], "AAAAAA"...)
	// Another message's valid signature on this message's bytes.
	other := string(sign(court, payload("court-changchun", "case-handling", identity(person(pick.renamed)))))
	mine := string(sign(court, payload("court-changchun", "case-handling", identity(person(pick.renamed)))))
	swapped := mine[:strings.LastIndexByte(mine, '.')] + other[strings.LastIndexByte(other, '.'):]
	flattened := func() []byte {
		parts := strings.Split(string(sign(court, payload("court-changchun", "case-handling", identity(person(pick.offender))))), ".")
		b, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
		return b
	}
	general := func() []byte {
		parts := strings.Split(string(sign(court, payload("court-changchun", "case-handling", identity(person(pick.offender))))), ".")
		b, _ := json.Marshal(map[string]any{"payload": parts[1], "signatures": []map[string]string{{"protected": parts[0], "signature": parts[2]}}})
		return b
	}
	nested := func(depth int) string {
		return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	}
	const cc = "court-changchun"
	sql := "' OR '1'='1'; DROP TABLE persons; --"
	// sqlCourt is the court's ordinary request with old replaced by new in
	// its JSON text; courtP the request with p changed.
	sqlCourt := func(old, repl string) []byte { return signText(court, with(courtJSON(), old, repl)) }
	courtP := func(mod func(p *envelope.Payload)) []byte {
		p := payload(cc, "case-handling", identity(person(pick.clean)))
		mod(&p)
		return sign(court, p)
	}
	issuedText := `"issued_at":` + jsonText(now.Format(time.RFC3339))

	rejected := func(reason string) hostileOutcome {
		return hostileOutcome{Decision: schemas.DecisionRejected, Reason: reason}
	}
	denied := func(reason string) hostileOutcome {
		return hostileOutcome{Decision: schemas.DecisionDenied, Reason: reason}
	}
	dead := func(reason envelope.Reason) hostileOutcome {
		return hostileOutcome{DeadLetter: true, Reason: string(reason)}
	}
	answered := hostileOutcome{Decision: schemas.DecisionAnswered}
	noRecord := hostileOutcome{Decision: schemas.DecisionNotFound, Reason: broker.ReasonNoRecord}
	schema := rejected(string(envelope.ReasonSchemaViolation))

	cases := []hostileCase{
		// Signatures and algorithms.
		{"forged signature", cc, forged, dead(envelope.ReasonSignatureInvalid)},
		{"another message's signature", cc, []byte(swapped), dead(envelope.ReasonSignatureInvalid)},
		{"alg none, empty signature", cc, []byte(b64([]byte(hdr("none", court.KID()))) + "." + b64([]byte(courtJSON())) + "."), dead(envelope.ReasonAlgNotAllowed)},
		{"alg NONE with a signature", cc, signHeader(court, hdr("NONE", court.KID()), courtJSON()), dead(envelope.ReasonAlgNotAllowed)},
		{"HS256 keyed with the court's raw public key", cc, hs256(court.Public.Key.(ed25519.PublicKey)), dead(envelope.ReasonAlgNotAllowed)},
		{"HS256 keyed with the court's public JWK", cc, hs256(courtPub), dead(envelope.ReasonAlgNotAllowed)},
		{"HS256 keyed with the court's published JWKS file", cc, hs256(jwksFile), dead(envelope.ReasonAlgNotAllowed)},
		{"alg ES256 on the court's Ed25519 kid", cc, signHeader(court, hdr("ES256", court.KID()), courtJSON()), dead(envelope.ReasonSignatureInvalid)},
		{"high-S twin of a valid ES256 signature", "civil-affairs-shulan", highS(t, shulanGood), dead(envelope.ReasonSignatureInvalid)},

		// Keys.
		{"another agency's key, claiming the court", cc, sign(notary, payload("court-changchun", "case-handling", identity(person(pick.clean)))), dead(envelope.ReasonAgencyMismatch)},
		{"another agency's key under the court's kid", cc, signHeader(notary, hdr("EdDSA", court.KID()), courtJSON()), dead(envelope.ReasonSignatureInvalid)},
		{"a key nobody registered", cc, sign(stranger, payload("court-changchun", "case-handling", identity(person(pick.clean)))), dead(envelope.ReasonUnknownKey)},
		{"revoked key", cc, sign(revoked, payload("court-changchun", "case-handling", identity(person(pick.clean)))), dead(envelope.ReasonKeyRevoked)},
		// The contract: the broker takes nothing from a key once revoked,
		// whatever issued_at claims — a stolen key can backdate.
		{"revoked key, issued_at backdated before the revocation", cc, func() []byte {
			p := payload("court-changchun", "case-handling", identity(person(pick.clean)))
			p.IssuedAt, p.ExpiresAt = revokedAt.Add(-30*time.Minute), now.Add(10*time.Minute)
			return sign(revoked, p)
		}(), dead(envelope.ReasonKeyRevoked)},
		{"unknown kid", cc, signHeader(court, hdr("EdDSA", "court-changchun/k-nobody"), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"no kid", cc, signHeader(court, `{"alg":"EdDSA"}`, courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid with ../ back to the court's own key", cc, signHeader(court, hdr("EdDSA", "court-changchun/../court-changchun/"+court.KeyID), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid ../ to the police key", cc, signHeader(court, hdr("EdDSA", "../"+police.KID()), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid an absolute path to the keys file", cc, signHeader(court, hdr("EdDSA", keys.JWKSPath(cfg.KeysDir, "court-changchun")), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid /etc/passwd", cc, signHeader(court, hdr("EdDSA", "/etc/passwd"), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid with a NUL after the court's kid", cc, signHeader(court, hdr("EdDSA", court.KID()+"\x00"), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid of 100,000 characters", cc, signHeader(court, hdr("EdDSA", "court-changchun/"+strings.Repeat("k", 100_000)), courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"kid with SQL metacharacters", cc, signHeader(court, hdr("EdDSA", "court-changchun/"+sql), courtJSON()), dead(envelope.ReasonUnknownKey)},

		// Header parameters that carry their own key, and critical ones.
		{"embedded jwk of the signer's own key", cc, signHeader(attacker, hdr("EdDSA", court.KID(), `"jwk":`+string(attackerJWK)), courtJSON()), dead(envelope.ReasonSignatureInvalid)},
		{"embedded jwk, no kid", cc, signHeader(attacker, `{"alg":"EdDSA","jwk":`+string(attackerJWK)+`}`, courtJSON()), dead(envelope.ReasonUnknownKey)},
		{"jku to the signer's key set", cc, signHeader(attacker, hdr("EdDSA", court.KID(), `"jku":"https://attacker.example/jwks.json"`), courtJSON()), dead(envelope.ReasonSignatureInvalid)},
		{"x5u to the signer's certificate", cc, signHeader(attacker, hdr("EdDSA", court.KID(), `"x5u":"https://attacker.example/cert.pem"`), courtJSON()), dead(envelope.ReasonSignatureInvalid)},
		{"crit header", cc, signHeader(court, hdr("EdDSA", court.KID(), `"crit":["exp"]`, `"exp":1`), courtJSON()), dead(envelope.ReasonMalformed)},
		{"b64 false (RFC 7797)", cc, signHeader(court, hdr("EdDSA", court.KID(), `"b64":false`, `"crit":["b64"]`), courtJSON()), dead(envelope.ReasonMalformed)},

		// Other serialisations and framing.
		{"JWS JSON serialization, flattened", cc, flattened(), dead(envelope.ReasonMalformed)},
		{"JWS JSON serialization, general", cc, general(), dead(envelope.ReasonMalformed)},
		{"four parts", cc, append(sign(court, payload("court-changchun", "case-handling", identity(person(pick.clean)))), ".AAAA"...), dead(envelope.ReasonMalformed)},
		{"a newline inside the signature", cc, func() []byte {
			s := sign(court, payload("court-changchun", "case-handling", identity(person(pick.clean))))
			return []byte(string(s[:len(s)-10]) + "\n" + string(s[len(s)-10:]))
		}(), dead(envelope.ReasonMalformed)},
		{"empty message", cc, []byte{}, dead(envelope.ReasonMalformed)},
		{"oversized", cc, []byte(strings.Repeat("x", cfg.Limits.MaxMessageBytes+1)), dead(envelope.ReasonTooLarge)},
		{"oversized, validly signed", cc, sign(court, payload("court-changchun", "case-handling", identity(subj(pick.clean.IDNumber, strings.Repeat("名", cfg.Limits.MaxMessageBytes/3))))), dead(envelope.ReasonTooLarge)},

		// JSON the parsers of the signed bytes could read differently.
		{"payload nested 65 deep", cc, signText(court, with(courtJSON(), `"body":{`, `"x":`+nested(65)+`,"body":{`)), dead(envelope.ReasonMalformed)},
		{"payload nested 60,000 deep", cc, signText(court, "["+strings.Repeat("[", 60_000)+strings.Repeat("]", 60_000)+"]"), dead(envelope.ReasonMalformed)},
		{"header nested 65 deep", cc, signHeader(court, hdr("EdDSA", court.KID(), `"x":`+nested(65)), courtJSON()), dead(envelope.ReasonMalformed)},
		{"duplicate member in the payload: agency", cc, signText(court, with(courtJSON(), `"agency":"court-changchun"`, `"agency":"court-changchun","agency":"notary-dunhua"`)), dead(envelope.ReasonMalformed)},
		{"duplicate member in the body, one escaped", cc, signText(court, with(courtJSON(), `"query":"identity"`, `"query":"identity","\u0071uery":"criminal_record"`)), dead(envelope.ReasonMalformed)},
		{"duplicate member in the header: kid", cc, signHeader(court, hdr("EdDSA", "court-changchun/k-nobody", `"kid":`+jsonText(court.KID())), courtJSON()), dead(envelope.ReasonMalformed)},
		{"duplicate member in the header: alg, escaped", cc, signHeader(court, hdr("EdDSA", court.KID(), `"\u0061lg":"none"`), courtJSON()), dead(envelope.ReasonMalformed)},
		{"header members kid and Kid", cc, signHeader(court, hdr("EdDSA", court.KID(), `"Kid":"notary-dunhua/x"`), courtJSON()), dead(envelope.ReasonMalformed)},
		{"invalid UTF-8 in the payload", cc, signText(court, with(courtJSON(), pick.clean.Name, pick.clean.Name+"\xff\xfe")), dead(envelope.ReasonMalformed)},
		{"lone surrogate escape in the payload", cc, signText(court, with(courtJSON(), pick.clean.Name, pick.clean.Name+`\ud800`)), dead(envelope.ReasonMalformed)},
		{"invalid UTF-8 in the header", cc, signHeader(court, hdr("EdDSA", court.KID(), "\"x\":\"\xc3\x28\""), courtJSON()), dead(envelope.ReasonMalformed)},
		{"payload a JSON array", cc, signText(court, "["+courtJSON()+"]"), dead(envelope.ReasonMalformed)},
		{"payload not JSON", cc, signText(court, "verification_request court-changchun"), dead(envelope.ReasonMalformed)},

		// Time window and replay: the sender is authenticated.
		{"replayed id with other content", cc, func() []byte {
			p := original
			p.Purpose.CaseRef = "H-2026-002"
			return sign(court, p)
		}(), rejected(string(envelope.ReasonReplay))},
		{"expired", cc, courtTime(now.Add(-2*time.Hour), now.Add(-time.Hour)), rejected(string(envelope.ReasonExpired))},
		{"issued in the future", cc, courtTime(now.Add(time.Hour), now.Add(2*time.Hour)), rejected(string(envelope.ReasonNotYetValid))},
		{"lifetime too long", cc, courtTime(now, now.Add(48*time.Hour)), rejected(string(envelope.ReasonLifetime))},
		{"expires before it is issued", cc, courtTime(now, now.Add(-time.Minute)), rejected(string(envelope.ReasonLifetime))},

		// Types, unknown members and numbers.
		{"wrong type: id_number a number", cc, sqlCourt(jsonText(pick.clean.IDNumber), "220102199001011234"), schema},
		{"wrong type: purpose a string", cc, sqlCourt(`"purpose":{"basis":"case-handling","case_ref":"H-2026-001"}`, `"purpose":"case-handling"`), schema},
		{"wrong type: issued_at a number", cc, sqlCourt(issuedText, `"issued_at":`+fmt.Sprint(now.Unix())), schema},
		{"wrong type: body an array", cc, courtP(func(p *envelope.Payload) { p.Body = json.RawMessage(`[` + identity(person(pick.clean)) + `]`) }), schema},
		{"wrong type: agency a number", cc, sqlCourt(`"agency":"court-changchun"`, `"agency":220100`), dead(envelope.ReasonAgencyMismatch)},
		{"unknown member at the top", cc, sqlCourt(`"body":{`, `"priority":"urgent","body":{`), schema},
		{"unknown member in the body", cc, sqlCourt(`"query":"identity"`, `"query":"identity","ethnicity":"汉"`), schema},
		{"unknown member in the subject", cc, sqlCourt(`"name":`, `"photo":"x","name":`), schema},
		{"number beyond float range as a field", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":1e400`), schema},
		{"number beyond float range as expires_at", cc, sqlCourt(`"expires_at":`+jsonText(now.Add(10*time.Minute).Format(time.RFC3339)), `"expires_at":-1e999`), schema},

		// ID numbers the schema refuses.
		{"ID number with a bad check digit", cc, sign(court, payload(cc, "case-handling", identity(subj(badCheckDigit(pick.clean.IDNumber), pick.clean.Name)))), schema},
		{"ID number with a bad date (30 February)", cc, sign(court, payload(cc, "case-handling", identity(subj(idWith("220102", "19900230", "123"), pick.clean.Name)))), schema},
		{"ID number born tomorrow", cc, sign(court, payload(cc, "case-handling", identity(subj(idWith("220102", now.In(residentid.China).AddDate(0, 0, 1).Format("20060102"), "123"), pick.clean.Name)))), schema},
		{"ID number with a bad region (99)", cc, sign(court, payload(cc, "case-handling", identity(subj(idWith("990101", "19900101", "123"), pick.clean.Name)))), schema},
		{"ID number with a lower-case x", cc, sign(court, payload(cc, "case-handling", identity(subj(idWith("220102", "19900101", "123")[:17]+"x", pick.clean.Name)))), schema},

		// SQL metacharacters in every string field: answered normally.
		{"SQL in type", cc, courtP(func(p *envelope.Payload) { p.Type += sql }), schema},
		{"SQL in id", cc, courtP(func(p *envelope.Payload) { p.ID = sql }), schema},
		{"SQL in agency", cc, courtP(func(p *envelope.Payload) { p.Agency += sql }), dead(envelope.ReasonAgencyMismatch)},
		{"SQL in issued_at", cc, sqlCourt(issuedText, `"issued_at":`+jsonText(sql)), schema},
		{"SQL in purpose.basis", cc, courtP(func(p *envelope.Payload) { p.Purpose.Basis += sql }), denied(policies.DenyPurposeNotAllowed)},
		{"SQL in purpose.case_ref", cc, courtP(func(p *envelope.Payload) { p.Purpose.CaseRef = sql }), answered},
		{"SQL in body.query", cc, sqlCourt(`"query":"identity"`, `"query":`+jsonText("identity"+sql)), schema},
		{"SQL in subject.id_number", cc, sqlCourt(jsonText(pick.clean.IDNumber), jsonText(pick.clean.IDNumber+sql)), schema},
		{"SQL in subject.name", cc, sign(court, payload(cc, "case-handling", identity(subj(pick.clean.IDNumber, sql)))), noRecord},
		{"SQL in related_subject.name", "notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation",
			`{"query":"kinship","subject":`+person(pick.kinA)+`,"related_subject":`+subj(pick.kinB.IDNumber, sql)+`}`)), noRecord},
		{"SQL in related_subject.id_number", "notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation",
			`{"query":"kinship","subject":`+person(pick.kinA)+`,"related_subject":`+subj(sql, pick.kinB.Name)+`}`)), schema},
		{"SQL in body.as_of", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":`+jsonText(sql)), schema},
		{"SQL in a dispute's statement and evidence", cc, feedbackMsg(court, schemas.TypeDispute, schemas.Dispute{Receipt: courtReceipt,
			Fields: []string{"id_name_match"}, Statement: sql, EvidenceRef: sql}), answered},
		{"SQL in an acknowledged receipt id", cc, feedbackMsg(court, schemas.TypeAcknowledgement, map[string]any{"ref_type": "receipt",
			"ref": map[string]string{"id": sql, "digest": courtReceipt.Digest}}), schema},

		// What the request asks.
		{"kinship with one person twice", "notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation",
			`{"query":"kinship","subject":`+person(pick.kinA)+`,"related_subject":`+person(pick.kinA)+`}`)), rejected(adapters.ReasonInvalidQuery)},
		{"as_of in the future", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":`+jsonText(now.Add(time.Hour).Format(time.RFC3339))), rejected(adapters.ReasonInvalidQuery)},
		{"as_of before 1984", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":"1983-12-31T00:00:00+08:00"`), rejected(adapters.ReasonInvalidQuery)},
		{"as_of the year 1", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":"0001-01-01T00:00:00Z"`), rejected(adapters.ReasonInvalidQuery)},
		{"as_of the year 9999", cc, sqlCourt(`"query":"identity"`, `"query":"identity","as_of":"9999-12-31T23:59:59Z"`), rejected(adapters.ReasonInvalidQuery)},

		// What the agreements refuse.
		{"a query outside every agreement", cc, sign(court, payload(cc, "case-handling", `{"query":"household","subject":`+person(pick.clean)+`}`)), denied(policies.DenyQueryNotAllowed)},
		{"an agency without an agreement", "civil-affairs-jilin", sign(signer("civil-affairs-jilin"), payload("civil-affairs-jilin", "case-handling", identity(person(pick.clean)))), denied(policies.DenyNoAgreement)},
		{"a purpose not allowed", "edu-jian", sign(edu, payload("edu-jian", "curiosity", `{"query":"residence","subject":`+person(pick.jian)+`}`)), denied(policies.DenyPurposeNotAllowed)},
		{"a subject outside the agreed scope", "edu-jian", sign(edu, payload("edu-jian", "school-admission", `{"query":"household","subject":`+person(pick.outsider)+`}`)), denied(policies.DenyOutsideScope)},
		{"a missing case reference (none)", cc, func() []byte {
			p := payload(cc, "litigation", `{"query":"criminal_record","subject":`+person(pick.clean)+`}`)
			p.Purpose.CaseRef = "none"
			return sign(court, p)
		}(), denied(policies.DenyCaseRefMissing)},
		{"a missing case reference (Ｎ／Ａ)", cc, func() []byte {
			p := payload(cc, "litigation", `{"query":"criminal_record","subject":`+person(pick.clean)+`}`)
			p.Purpose.CaseRef = "Ｎ／Ａ"
			return sign(court, p)
		}(), denied(policies.DenyCaseRefMissing)},
		{"a missing case reference (无)", cc, func() []byte {
			p := payload(cc, "litigation", `{"query":"criminal_record","subject":`+person(pick.clean)+`}`)
			p.Purpose.CaseRef = "无"
			return sign(court, p)
		}(), denied(policies.DenyCaseRefMissing)},
		{"quota exceeded", cc, sign(court, payload(cc, "case-handling", `{"query":"former_names","subject":`+person(pick.renamed)+`}`)), denied(policies.DenyQuotaExceeded)},
		{"outside service hours", "notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation", `{"query":"household","subject":`+person(pick.clean)+`}`)), denied(policies.DenyOutsideServiceHours)},
		{"under a suspended agreement", "notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation", `{"query":"residence","subject":`+person(pick.clean)+`}`)), denied(policies.DenyNotInForce)},
		{"a suspended agency", "social-security-baicheng", sign(pension, payload("social-security-baicheng", "pension-eligibility", `{"query":"hukou_cancellation","subject":`+person(pick.baicheng)+`}`)), denied(broker.ReasonAgencySuspended)},

		// Other agencies' messages.
		{"a dispute of another agency's receipt", "edu-jian", feedbackMsg(edu, schemas.TypeDispute, schemas.Dispute{Receipt: courtReceipt, Fields: []string{"id_name_match"}, Statement: "wrong"}), rejected(feedback.ReasonNotYourReceipt)},
		{"an acknowledgement of another agency's receipt", "edu-jian", feedbackMsg(edu, schemas.TypeAcknowledgement, schemas.Acknowledgement{RefType: "receipt", Ref: courtReceipt}), rejected(feedback.ReasonNotYourReceipt)},
		{"a batch acknowledgement for another agency", cc, feedbackMsg(court, schemas.TypeAcknowledgement, schemas.Acknowledgement{RefType: schemas.TypeBatchManifest, Ref: batchRef}), rejected(feedback.ReasonNotYourReceipt)},
		{"a request on another agency's topic", "notary-dunhua", sign(court, payload(cc, "case-handling", identity(person(pick.clean)))), hostileOutcome{DeadLetter: true, Reason: broker.ReasonTopicMismatch}},
		{"a decided request again, on another agency's topic", "notary-dunhua", originalRaw, hostileOutcome{DeadLetter: true, Reason: broker.ReasonTopicMismatch}},
	}

	// askOrdinary sends an ordinary request of every agency and checks its
	// answer, as the data says; before the catalogue Baicheng is suspended
	// and the provincial department has no agreement. It returns their
	// digests.
	askOrdinary := func(before bool) []string {
		t.Helper()
		suspendedOrAnswered, noAgreementOrAnswered := answered, answered
		if before {
			suspendedOrAnswered, noAgreementOrAnswered = denied(broker.ReasonAgencySuspended), denied(policies.DenyNoAgreement)
		}
		var digests []string
		for _, o := range []struct {
			agency string
			raw    []byte
			want   hostileOutcome
		}{
			{cc, sign(court, payload(cc, "criminal-proceedings", `{"query":"criminal_record","subject":`+person(pick.offender)+`}`)), answered},
			{cc, sign(court, payload(cc, "case-handling", identity(subj(pick.unknownID, "张三")))), noRecord},
			{"edu-jian", sign(edu, payload("edu-jian", "school-admission", `{"query":"residence","subject":`+person(pick.jian)+`}`)), answered},
			{"civil-affairs-jilin", sign(signer("civil-affairs-jilin"), payload("civil-affairs-jilin", "case-handling", identity(person(pick.clean)))), noAgreementOrAnswered},
			{"notary-dunhua", sign(notary, payload("notary-dunhua", "notarisation", `{"query":"kinship","subject":`+person(pick.kinA)+`,"related_subject":`+person(pick.kinB)+`}`)), answered},
			{"social-security-baicheng", sign(pension, payload("social-security-baicheng", "pension-eligibility", `{"query":"hukou_cancellation","subject":`+person(pick.baicheng)+`}`)), suspendedOrAnswered},
			{"civil-affairs-shulan", sign(shulanES, payload("civil-affairs-shulan", "marriage-registration", identity(person(pick.shulan)))), answered},
		} {
			r := hostileRequest(ctx, t, clients[o.agency], o.raw)
			if g := (hostileOutcome{Decision: r.Decision, Reason: r.Reason}); g != o.want {
				t.Errorf("%s's ordinary request (before the catalogue: %v): %s %q, want %s", o.agency, before, g, r.Detail, o.want)
			}
			digests = append(digests, envelope.DigestOf(o.raw))
		}
		return digests
	}

	byDigest := map[string]*hostileCase{}
	msgs := make([]bkafka.Message, 0, len(cases))
	for i := range cases {
		c := &cases[i]
		d := envelope.DigestOf(c.value)
		if prev, ok := byDigest[d]; ok {
			t.Fatalf("cases %q and %q send the same bytes", prev.name, c.name)
		}
		byDigest[d] = c
		msgs = append(msgs, bkafka.Message{Topic: svc.topics.Requests(c.agency), Key: []byte(d), Value: c.value})
	}
	// Every agency's ordinary request first, so the catalogue's refusals
	// are not those of a broken setup, and so every client holds its
	// connections before the footprint is measured.
	setup := askOrdinary(true)
	setup = append(setup, envelope.DigestOf(originalRaw), envelope.DigestOf(shulanGood))
	// The receipts of the setup reach the tails too: take them out, so a
	// case's outcome is what the catalogue did.
	drain := time.NewTimer(30 * time.Second)
	for len(setup) > 0 {
		select {
		case s := <-seen:
			setup = slices.DeleteFunc(setup, func(d string) bool { return d == s.digest })
		case <-drain.C:
			t.Fatalf("the tails saw no receipt for %d setup requests", len(setup))
		}
	}
	drain.Stop()
	prod, err := bkafka.NewProducer(svc.kafka, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tablesBefore := hostileTables(ctx, t, cfg.Store.DSN, recordsAdmin)
	goroutines, heap := hostileFootprint()
	sent := time.Now()
	if err := prod.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// Closed at once: its writers (one per partition written) are the
	// test's goroutines, not the broker's.
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]hostileSeen{}
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
collect:
	for len(got) < len(cases) {
		select {
		case s := <-seen:
			if _, ok := byDigest[s.digest]; !ok {
				continue
			}
			if _, dup := got[s.digest]; !dup {
				got[s.digest] = s
			}
		case <-deadline.C:
			break collect
		}
	}
	took := time.Since(sent)
	asExpected := 0
	for d, c := range byDigest {
		s, ok := got[d]
		switch {
		case !ok:
			t.Errorf("%s: no receipt and no dead letter within 2 minutes, want %s", c.name, c.want)
		case s.hostileOutcome != c.want:
			t.Errorf("%s: %s (%.200s), want %s", c.name, s.hostileOutcome, s.detail, c.want)
		case !s.DeadLetter && s.agency != c.agency:
			t.Errorf("%s: receipt on %s's topic, want %s's", c.name, s.agency, c.agency)
		default:
			asExpected++
		}
	}
	summary := fmt.Sprintf("hostile: %d cases, %d as expected", len(cases), asExpected)
	t.Logf("%s (all decided in %v)", summary, took.Round(time.Millisecond))

	// SQL metacharacters changed nothing: the same tables, the records
	// untouched.
	if after := hostileTables(ctx, t, cfg.Store.DSN, recordsAdmin); !slices.Equal(after, tablesBefore) {
		t.Errorf("tables after the catalogue:\n%v\nbefore:\n%v", after, tablesBefore)
	}

	// Every agency's ordinary requests, answered as the data says: Baicheng
	// resumed, the provincial department given an agreement.
	agencyCLI("resume", "social-security-baicheng")
	waitFor(ctx, t, "the broker sees Baicheng resumed", 20*time.Second, func() bool { return !suspended("social-security-baicheng")() })
	_, civilRef := writeCoSigned(t, cfg, "civil-affairs-jilin-identity.v1", fmt.Appendf(nil, `id: civil-affairs-jilin/identity
version: 1
title: "Provincial civil affairs identity checks"
parties:
  requester: civil-affairs-jilin
  provider: %s
queries:
  - query: identity
    purposes: [case-handling]
    fields: [as_of, id_name_match, status]
    scope: ["220000"]
validity:
  from: %q
  until: %q
status: active
`, policeOwner, now.Add(-time.Hour).Format(time.RFC3339), now.AddDate(0, 1, 0).Format(time.RFC3339)))
	waitFor(ctx, t, "the provincial department's agreement is loaded", 20*time.Second, func() bool {
		ref, st, ok := loadedRef(svc, civilRef.ID)
		return ok && ref == civilRef && st == policies.StatusActive
	})
	askOrdinary(false)
	// Everything committed, and the broker back to its footprint.
	testenv.Eventually(ctx, t, "consumer lag 0", 30*time.Second, func() error {
		lag, err := scrapeLag(ctx, "http://"+svc.httpAddr()+"/metrics")
		if err == nil && lag != 0 {
			err = fmt.Errorf("lag %v", lag)
		}
		return err
	})
	// Generous bounds: the broker's Kafka writer keeps two goroutines for
	// every topic partition it has written to (kafka-go), and the
	// catalogue is the first to reach some receipts and dead-letter
	// partitions; a goroutine or a buffer kept per refused message would
	// pass them.
	testenv.Eventually(ctx, t, "goroutines and heap back within bounds", 30*time.Second, func() error {
		g, h := hostileFootprint()
		if g > goroutines+50 || h > heap+64<<20 {
			return fmt.Errorf("%d goroutines (before the catalogue %d), heap in use %d MiB (before %d MiB)", g, goroutines, h>>20, heap>>20)
		}
		return nil
	})
	g, h := hostileFootprint()
	t.Logf("after the catalogue: %d goroutines (before %d), heap in use %d MiB (before %d MiB); the whole test took %v",
		g, goroutines, h>>20, heap>>20, time.Since(started).Round(time.Second))
}

// hostileRequest sends raw on its agency's request topic and returns its
// verified receipt.
func hostileRequest(ctx context.Context, t *testing.T, c *client.Client, raw []byte) *client.Receipt {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	got, err := c.Request(rctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
	if err != nil {
		t.Fatalf("no receipt: %v", err)
	}
	return got
}

// hostileWatch reports every receipt on the receipts topics of clients'
// agencies (verified as each agency verifies them) and every dead letter,
// as they arrive, until ctx ends. Unlike Watcher.Await it waits for no
// particular set: a message may end up in either place.
func hostileWatch(ctx context.Context, t *testing.T, svc *service, clients map[string]*client.Client) <-chan hostileSeen {
	t.Helper()
	out := make(chan hostileSeen, 1024)
	send := func(s hostileSeen) {
		select {
		case out <- s:
		case <-ctx.Done():
		}
	}
	for agency, c := range clients {
		tail, err := client.TailTopic(ctx, svc.kafka, c.ReceiptTopic)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tail.Close)
		go func() {
			for {
				rec, err := tail.Next(ctx)
				if err != nil {
					return
				}
				r, err := client.VerifyReceipt(rec.Value, c.Broker, client.Expect{RequestAgency: agency, Decrypt: c.Decrypt})
				if err != nil {
					// Dispute notices travel here too; a receipt that does
					// not verify is reported against the digest it names.
					if d := rec.Headers["certless-request-digest"]; d != "" {
						send(hostileSeen{digest: d, hostileOutcome: hostileOutcome{Decision: "unverifiable"}, agency: agency, detail: err.Error()})
					}
					continue
				}
				send(hostileSeen{digest: r.RequestDigest, hostileOutcome: hostileOutcome{Decision: r.Decision, Reason: r.Reason}, agency: agency, detail: r.Detail})
			}
		}()
	}
	dlq, err := client.TailTopic(ctx, svc.kafka, svc.topics.DeadLetter())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dlq.Close)
	go func() {
		for {
			rec, err := dlq.Next(ctx)
			if err != nil {
				return
			}
			var dl broker.DeadLetter
			if json.Unmarshal(rec.Value, &dl) != nil {
				continue
			}
			send(hostileSeen{digest: dl.Digest, hostileOutcome: hostileOutcome{DeadLetter: true, Reason: dl.Reason}, detail: dl.Detail})
		}
	}()
	return out
}

// hostileTables lists the tables of the decision store's database and the
// row count of every records table, one line each.
func hostileTables(ctx context.Context, t *testing.T, decisions, recordsDSN string) []string {
	t.Helper()
	var out []string
	for _, dsn := range []string{decisions, recordsDSN} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(names, " "))
		if dsn == recordsDSN {
			for _, table := range sqlsource.Tables {
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
					t.Fatalf("records table %s: %v", table, err)
				}
				out = append(out, fmt.Sprintf("%s: %d rows", table, n))
			}
		}
		conn.Close(ctx)
	}
	return out
}

// hostileFootprint is the process's goroutine count and heap in use after a
// garbage collection; the broker runs in this process.
func hostileFootprint() (int, uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}
