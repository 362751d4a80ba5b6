package policies

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
)

// world is a key registry with the parties the tests use.
type world struct {
	t    *testing.T
	dir  string // the keys folder
	keys map[string]*keys.Private
	reg  *keys.Registry
}

func newWorld(t *testing.T, algs map[string]keys.Alg) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), keys: map[string]*keys.Private{}}
	for agency, alg := range algs {
		k, err := keys.GenerateInDir(w.dir, agency, "k1", alg)
		if err != nil {
			t.Fatal(err)
		}
		w.keys[agency] = k
	}
	w.load()
	return w
}

func (w *world) load() {
	w.t.Helper()
	reg, err := keys.LoadDir(w.dir)
	if err != nil {
		w.t.Fatal(err)
	}
	w.reg = reg
}

func defaultWorld(t *testing.T) *world {
	return newWorld(t, map[string]keys.Alg{
		"court-changchun": keys.EdDSA,
		"police-jilin":    keys.ES256,
		"edu-jian":        keys.EdDSA,
		"notary-dunhua":   keys.ES256,
		"stranger":        keys.EdDSA,
	})
}

// cosign signs doc by each agency in turn.
func (w *world) cosign(doc []byte, at time.Time, agencies ...string) []byte {
	w.t.Helper()
	var sigs []byte
	for _, a := range agencies {
		var err error
		if sigs, err = Sign(doc, sigs, w.keys[a], at); err != nil {
			w.t.Fatal(err)
		}
	}
	return sigs
}

var t0 = time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC) // 10:00 Beijing, a Tuesday

const sampleDoc = `id: court-changchun/criminal-records
version: 1
title: 长春市中级人民法院 — 违法犯罪记录核查
parties:
  requester: court-changchun
  provider: police-jilin
queries:
  - query: criminal_record
    purposes: [litigation]
    case_ref_required: true
    fields: [as_of, has_criminal_record]
  - query: identity
    purposes: [litigation, enforcement]
    fields: [as_of, id_name_match, status]
    scope: ["220100"]
quotas:
  per_minute: 60
  per_day: 1000
service_hours:
  from: "08:00"
  to: "18:00"
  weekdays: [1, 2, 3, 4, 5]
validity:
  from: 2026-11-01T00:00:00+08:00
  until: 2027-11-01T00:00:00+08:00
schedules:
  - name: daily-records
    query: criminal_record
    cron: "0 2 * * *"
status: active
`

// signStatementAnyone is SignStatement without the party check, so tests
// can write a statement by a stranger.
func signStatementAnyone(doc []byte, a *Agreement, status Status, key *keys.Private, at time.Time) ([]byte, error) {
	payload, err := json.Marshal(Statement{Agreement: a.ID, Version: a.Version, Digest: Digest(doc), Status: status, At: at.UTC()})
	if err != nil {
		return nil, err
	}
	jws, err := envelope.SignBytes(key, payload)
	return append(jws, '\n'), err
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// highTwin returns the (r, n−s) twin of a low-S ES256 signature.
func highTwin(t *testing.T, s string) string {
	sig := mustB64(t, s)
	v := new(big.Int).SetBytes(sig[32:])
	v.Sub(p256Order, v).FillBytes(sig[32:])
	return base64.RawURLEncoding.EncodeToString(sig)
}
