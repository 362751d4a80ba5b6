package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// Names the fake HTTP record service of Dunhua (222403) misbehaves for.
const (
	nameRefused     = "拒绝"   // answered 403
	nameUnexpected  = "多余"   // answered with a member the protocol does not have
	nameUnavailable = "宕机"   // answered 503, always
	nameKnown       = "敦化居民" // answered found
)

// dunhuaUpstream is an HTTP record service in front of Dunhua's records
// that fails in every way the review found, chosen by the subject's name.
func dunhuaUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q adapters.Query
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
		until := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
		switch q.Subject.Name {
		case nameRefused:
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"this client may not ask"}`))
		case nameUnexpected:
			fmt.Fprintf(w, `{"found":true,"fields":{"as_of":%q,"id_name_match":true},"as_of":%q,"valid_until":%q,"source":"dunhua","ethnicity":"x"}`, now, now, until)
		case nameUnavailable:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			fmt.Fprintf(w, `{"found":true,"fields":{"as_of":%q,"id_name_match":true,"status":"active"},"as_of":%q,"valid_until":%q,"source":"dunhua"}`, now, now, until)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// poisonConfig is realConfig with a small in-flight window, a short retry
// bound, Dunhua's HTTP source, and a person whose residence lies outside
// the embedded region table.
func poisonConfig(ctx context.Context, t *testing.T) (*config.Config, records.Person) {
	t.Helper()
	cfg, recordsAdmin := realConfigAndRecords(ctx, t)
	cfg.Limits.InFlight = 8
	cfg.Limits.RetryAttempts = 3
	cfg.Limits.RetryWindow = config.Duration(2 * time.Second)
	cfg.Limits.RetryAfter = config.Duration(90 * time.Second)
	cfg.Adapters = append(cfg.Adapters, config.Adapter{
		Name: "dunhua-http", Type: "http", Level: "county", Region: "222403",
		Options: map[string]any{"url": dunhuaUpstream(t).URL, "attempts": 1, "trip_after": 1000, "timeout": "2s"},
	})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// A Ji'an resident (the education bureau's scope) who lived in Beijing
	// (110101) for a while.
	var p records.Person
	for _, x := range records.Generate(devSeed, devPersons).Persons {
		if strings.HasPrefix(x.IDNumber, "220582") && x.CancelReason == "" {
			p = x
			break
		}
	}
	conn, err := pgx.Connect(ctx, recordsAdmin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO residences (person_id, seq, region_code, from_date, to_date) VALUES ($1, 999, '110101', '1999-03-01', '2001-06-30')`, p.IDNumber); err != nil {
		t.Fatal(err)
	}
	return cfg, p
}

// TestRealKafkaPoisonCannotStall: on the real Kafka and PostgreSQL, every
// trigger the review found gets its signed answer within the retry bound,
// and a flood of more poison messages than limits.in_flight, interleaved
// with ordinary requests from every agency, holds nobody up: every request
// is answered and consumer lag returns to 0.
func TestRealKafkaPoisonCannotStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg, beijing := poisonConfig(ctx, t)
	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	now := time.Now().UTC().Truncate(time.Second)
	ds := records.Generate(devSeed, devPersons)

	signer := func(agency string) *keys.Private {
		k, err := keys.SigningKey(cfg.KeysDir, agency, now)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sign := func(agency, basis, body string) []byte {
		raw, err := envelope.Sign(signer(agency), envelope.Payload{
			Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: agency, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			Purpose: envelope.Purpose{Basis: basis, CaseRef: "P-1"}, Body: json.RawMessage(body),
		})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	subj := func(id, name string) string {
		b, _ := json.Marshal(schemas.Subject{IDNumber: id, Name: name})
		return string(b)
	}
	dunhua := func(i int, name string) string {
		return subj(residentid.Make("222403", time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i), i%1000), name)
	}
	p := ds.Persons[0]
	future := now.Add(time.Hour).Format(time.RFC3339)

	type sent struct {
		agency, decision, reason string
	}
	want := map[string]sent{} // digest → expected outcome
	var msgs []bkafka.Message
	add := func(agency, decision, reason string, raw []byte) {
		want[envelope.DigestOf(raw)] = sent{agency, decision, reason}
		msgs = append(msgs, bkafka.Message{Topic: svc.topics.Requests(agency), Value: raw})
	}
	// poison returns the i-th permanent trigger, from the agency it
	// concerns, cycling through all of them.
	poison := func(i int) {
		switch i % 5 {
		case 0: // kinship with oneself
			add("notary-dunhua", schemas.DecisionRejected, adapters.ReasonInvalidQuery,
				sign("notary-dunhua", "notarisation", `{"query":"kinship","subject":`+subj(p.IDNumber, p.Name)+`,"related_subject":`+subj(p.IDNumber, p.Name)+`}`))
		case 1: // as_of in the future
			add("court-changchun", schemas.DecisionRejected, adapters.ReasonInvalidQuery,
				sign("court-changchun", "criminal-proceedings", `{"query":"identity","subject":`+subj(p.IDNumber, p.Name)+`,"as_of":"`+future+`"}`))
		case 2: // an HTTP source answering 4xx
			add("court-changchun", schemas.DecisionRejected, adapters.ReasonSourceRefused,
				sign("court-changchun", "criminal-proceedings", `{"query":"identity","subject":`+dunhua(i, nameRefused)+`}`))
		case 3: // an HTTP source answering with an unexpected member
			add("notary-dunhua", schemas.DecisionRejected, adapters.ReasonAnswerInvalid,
				sign("notary-dunhua", "notarisation", `{"query":"identity","subject":`+dunhua(i, nameUnexpected)+`}`))
		case 4: // a residence outside the embedded region table: answered
			add("edu-jian", schemas.DecisionAnswered, "",
				sign("edu-jian", "school-admission", `{"query":"residence","subject":`+subj(beijing.IDNumber, beijing.Name)+`}`))
		}
	}
	// ordinary returns an ordinary request of each agency in turn.
	ordinary := func(i int) {
		q := ds.Persons[10+i%50]
		switch i % 3 {
		case 0:
			add("court-changchun", schemas.DecisionAnswered, "",
				sign("court-changchun", "criminal-proceedings", `{"query":"criminal_record","subject":`+subj(q.IDNumber, q.Name)+`}`))
		case 1:
			add("edu-jian", schemas.DecisionAnswered, "",
				sign("edu-jian", "school-admission", `{"query":"identity","subject":`+subj(q.IDNumber, q.Name)+`}`))
		case 2:
			add("notary-dunhua", schemas.DecisionAnswered, "",
				sign("notary-dunhua", "notarisation", `{"query":"identity","subject":`+dunhua(i, nameKnown)+`}`))
		}
	}
	const floods = 40 // five times limits.in_flight
	for i := range floods {
		poison(i)
		ordinary(i)
	}
	// Transient failures that outlast the bound: answered unavailable.
	for i := range 3 {
		add("court-changchun", schemas.DecisionUnavailable, broker.ReasonRetriesExhausted,
			sign("court-changchun", "criminal-proceedings", `{"query":"identity","subject":`+dunhua(500+i, nameUnavailable)+`}`))
	}

	watchers := map[string]*client.Watcher{}
	wantBy := map[string]map[string]string{}
	for _, agency := range []string{"court-changchun", "edu-jian", "notary-dunhua"} {
		watchers[agency] = watchReceipts(ctx, t, cfg, svc, agency)
		wantBy[agency] = map[string]string{}
	}
	for d, s := range want {
		wantBy[s.agency][d] = ""
	}
	prod, err := bkafka.NewProducer(svc.kafka, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	start := time.Now()
	if err := prod.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	got := map[string]*client.Receipt{}
	for agency, w := range watchers {
		rs, err := w.Await(ctx, wantBy[agency])
		if err != nil {
			t.Fatalf("%s: %v", agency, err)
		}
		for d, r := range rs {
			got[d] = r
		}
	}
	t.Logf("%d requests (%d poison, %d ordinary, 3 transient) answered in %v with limits.in_flight %d",
		len(msgs), floods, floods, time.Since(start).Round(time.Millisecond), cfg.Limits.InFlight)
	counts := map[string]int{}
	for d, w := range want {
		r := got[d]
		if r.Decision != w.decision || r.Reason != w.reason {
			t.Errorf("%s request: %s/%s %q, want %s/%s", w.agency, r.Decision, r.Reason, r.Detail, w.decision, w.reason)
		}
		if w.decision == schemas.DecisionUnavailable && r.RetryAfter != 90 {
			t.Errorf("unavailable without the retry hint: %d", r.RetryAfter)
		}
		counts[r.Decision+"/"+r.Reason]++
	}
	t.Logf("outcomes: %v", counts)

	// Everything was committed: the group's lag is 0 on every request topic.
	deadline := time.Now().Add(30 * time.Second)
	for {
		lag, err := scrapeLag(ctx, "http://"+svc.httpAddr()+"/metrics")
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer lag did not return to 0: %v (%v)", lag, err)
		}
		waitABit(ctx, 200*time.Millisecond)
	}
}

// scrapeLag sums certless_consumer_lag_messages over the request topics.
func scrapeLag(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	fam, ok := families["certless_consumer_lag_messages"]
	if !ok || len(fam.GetMetric()) == 0 {
		return 0, fmt.Errorf("no lag reported yet")
	}
	sum := 0.0
	for _, m := range fam.GetMetric() {
		sum += m.GetGauge().GetValue()
	}
	return sum, nil
}

// waitABit waits d or until ctx ends: the pause between two looks at a
// condition polled with a deadline.
func waitABit(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
