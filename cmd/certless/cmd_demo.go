package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

func newDemoCmd(g *globals) *cobra.Command {
	var verbose bool
	var out *outputFormat
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole exchange on embedded defaults with the sample agencies of three levels and check every receipt",
		Long: `Start a broker on embedded defaults (in-process Kafka, SQLite, synthetic
records, keys in the data folder), then let a court, an education bureau and
a notary office send a mix of requests: answered, not found, denied, invalid
signature, redelivered, replayed id, expired and schema-violating. Prints
each decision and a summary; exits 1 unless every request got exactly one
receipt that verified and every unauthenticated message reached the
dead-letter topic.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			dataDir := g.resolveDataDir(os.Getenv)
			level := "warn"
			if verbose {
				level = "info"
			}
			if v := os.Getenv(config.EnvLogLevel); v != "" {
				level = v // as serve has it
			}
			log, err := newLogger(config.Log{Level: level, Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			return runDemo(cmd.Context(), g, dataDir, log, asJSON)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the broker's log (at info; $CERTLESS_LOG_LEVEL sets the level)")
	out = addOutputFlag(cmd)
	return cmd
}

// demoCase is one request of the demo and what must come back.
type demoCase struct {
	agency, label string
	signed        client.Signed
	// want is "decision/reason" of the receipt, or "dead_letter/reason".
	want string
	got  string
	ok   bool
}

// runDemo runs the demo; asJSON prints its outcome as one JSON document
// (demoJSON) instead of the tables and hints.
func runDemo(ctx context.Context, g *globals, dataDir string, log *zap.Logger, asJSON bool) error {
	cfg, err := ensureDevData(ctx, dataDir, log)
	if err != nil {
		return err
	}
	// The demo runs its own broker on free ports, beside any `certless dev`.
	svc, err := startService(ctx, cfg, log, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	runCtx, stopBroker := context.WithCancel(ctx)
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- svc.run(runCtx) }()
	defer func() {
		stopBroker()
		<-brokerDone
	}()
	rep, err := runScenarios(ctx, cfg, svc)
	if err != nil {
		return err
	}
	if asJSON {
		if err := rep.writeJSON(ctx, g.stdout, svc); err != nil {
			return err
		}
	} else {
		rep.print(g.stdout)
		printSourceCalls(g.stdout, svc)
		fmt.Fprintf(g.stdout, "Decisions are stored in %s; broker JWKS: http://%s/.well-known/jwks.json (while running).\n", cfg.Store.DSN, svc.httpAddr())
		if err := rep.printLog(ctx, g.stdout, svc, dataDir); err != nil {
			return err
		}
	}
	if rep.failed() > 0 {
		return fmt.Errorf("demo: %d of %d requests did not get the expected single verified answer", rep.failed(), len(rep.cases))
	}
	return nil
}

// demoJSON is `certless demo --output json`.
type demoJSON struct {
	OK              bool                          `json:"ok"`
	Requests        int                           `json:"requests"`
	Failed          int                           `json:"failed"`
	ReceiptsChecked int                           `json:"receipts_verified"`
	DeadLetters     int                           `json:"dead_letters"`
	Cases           []demoCaseJSON                `json:"cases"`
	Sources         map[string]map[string]float64 `json:"source_answers"`
	Store           string                        `json:"store"`
	Checkpoint      string                        `json:"checkpoint"`
}

type demoCaseJSON struct {
	Agency   string `json:"agency"`
	Request  string `json:"request"`
	Digest   string `json:"digest,omitempty"` // of the request sent, if one was
	Expected string `json:"expected"`
	Got      string `json:"got"`
	OK       bool   `json:"ok"`
}

// writeJSON checkpoints what the demo decided and writes the outcome.
func (r *scenarioReport) writeJSON(ctx context.Context, w io.Writer, svc *service) error {
	if err := svc.checkpointer.Round(ctx); err != nil {
		return fmt.Errorf("demo: checkpoint the transparency log: %w", err)
	}
	cp, err := svc.store.LatestCheckpoint(ctx)
	if err != nil || cp == nil {
		return fmt.Errorf("demo: no checkpoint: %v", err)
	}
	d := demoJSON{OK: r.failed() == 0, Requests: len(r.cases), Failed: r.failed(), ReceiptsChecked: r.receipts, DeadLetters: r.dead,
		Cases: []demoCaseJSON{}, Sources: sourceCalls(svc.registry), Store: redactDSN(svc.cfg.Store.DSN), Checkpoint: string(cp)}
	for _, c := range r.cases {
		d.Cases = append(d.Cases, demoCaseJSON{c.agency, c.label, c.signed.Digest, c.want, c.got, c.ok})
	}
	return writeAgencyJSON(w, d)
}

// scenarioReport is the outcome of runScenarios.
type scenarioReport struct {
	cases          []*demoCase
	receipts, dead int
	// revoked is the request digest of the receipt the feedback scenario
	// had revoked.
	revoked string
	// decided is the decision of every receipt the agencies received, by
	// request digest: what a report of the run must count.
	decided map[string]string
}

func (r *scenarioReport) failed() int {
	n := 0
	for _, c := range r.cases {
		if !c.ok {
			n++
		}
	}
	return n
}

func (r *scenarioReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tagency\trequest\texpected\tgot\t")
	for i, c := range r.cases {
		mark := "ok"
		if !c.ok {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, c.agency, c.label, c.want, orDash(c.got), mark)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d requests: %d as expected, %d failed; %d receipts verified against the broker JWKS, %d dead letters.\n",
		len(r.cases), len(r.cases)-r.failed(), r.failed(), r.receipts, r.dead)
}

// printLog checkpoints what the demo decided and shows the log's head and
// how to prove one receipt offline.
func (r *scenarioReport) printLog(ctx context.Context, w io.Writer, svc *service, dataDir string) error {
	if err := svc.checkpointer.Round(ctx); err != nil {
		return fmt.Errorf("demo: checkpoint the transparency log: %w", err)
	}
	cp, err := svc.store.LatestCheckpoint(ctx)
	if err != nil || cp == nil {
		return fmt.Errorf("demo: no checkpoint: %v", err)
	}
	fmt.Fprintf(w, "\nTransparency log checkpoint (C2SP signed note; the demo's broker served it at http://%s/log/checkpoint,\n`certless --data %s dev` serves the same log at http://%s/log/checkpoint):\n%s\n",
		svc.httpAddr(), dataDir, svc.cfg.HTTP.Addr, cp)
	for _, c := range r.cases {
		if c.ok && strings.HasPrefix(c.want, "answered") {
			fmt.Fprintf(w, "Prove and check a receipt offline (its revocation status list saved beside it):\n  certless --data %s receipt proof --id %s --out receipt.bundle.json --status-out receipt.status.jwt\n  certless --data %s receipt verify receipt.bundle.json --status receipt.status.jwt\n",
				dataDir, c.signed.Digest, dataDir)
			break
		}
	}
	if r.revoked != "" {
		fmt.Fprintf(w, "The revoked receipt, offline (verify says: revoked: corrected, dispute …, and exits 1):\n  certless --data %s receipt proof --id %s --out revoked.bundle.json --status-out revoked.status.jwt\n  certless --data %s receipt verify revoked.bundle.json --status revoked.status.jwt\n  certless --data %s receipt list --revoked\n",
			dataDir, r.revoked, dataDir, dataDir)
	}
	fmt.Fprintf(w, "Periodic exchange, as the operator and the receiver see it:\n  certless --data %s exchange status\n  certless --data %s exchange run --agreement social-security-baicheng/records --schedule daily-cancellations --no-send\n  certless --data %s exchange export --batch <id> --out batch/ && certless --data %s exchange verify batch/\n",
		dataDir, dataDir, dataDir, dataDir)
	fmt.Fprintf(w, "Audit the whole log: certless --data %s audit verify\n", dataDir)
	return nil
}

// runScenarios sends the demo's requests through a running service as the
// sample agencies and checks what comes back. It is the demo on
// embedded defaults and an integration test on a real Kafka and PostgreSQL.
func runScenarios(ctx context.Context, cfg *config.Config, svc *service) (*scenarioReport, error) {
	kcfg := svc.kafka

	ds := records.Generate(devSeed, devPersons)
	pick := demoSubjects(ds)
	now := time.Now().UTC()
	signer := func(agency string) *keys.Private {
		k, err := keys.SigningKey(cfg.KeysDir, agency, now)
		if err != nil {
			panic(err) // ensureDevData generated it
		}
		return k
	}
	court, edu, notary := signer("court-changchun"), signer("edu-jian"), signer("notary-dunhua")
	civil := signer("civil-affairs-jilin")
	pension, marriage := signer("social-security-baicheng"), signer("civil-affairs-shulan")
	if err := demoAgreements(ctx, cfg, svc, now); err != nil {
		return nil, fmt.Errorf("demo agreements: %w", err)
	}
	build := func(k *keys.Private, r client.Request, at time.Time) client.Signed {
		if r.Basis == "" {
			r.Basis, r.CaseRef = "case-handling", "DEMO-"+now.Format("20060102")
		}
		s, err := client.Build(k, r, at)
		if err != nil {
			panic(err)
		}
		return s
	}
	subj := func(p records.Person) schemas.Subject { return schemas.Subject{IDNumber: p.IDNumber, Name: p.Name} }

	answeredCourt := build(court, client.Request{Query: "criminal_record", Subject: subj(pick.clean)}, now)
	identityCourt := build(court, client.Request{Query: "identity", Subject: subj(pick.offender)}, now)
	replayed := build(notary, client.Request{Query: "identity", Subject: subj(pick.kinA)}, now)
	cases := []*demoCase{
		{agency: "court-changchun", label: "criminal record, none", signed: answeredCourt, want: "answered"},
		{agency: "court-changchun", label: "criminal record, on file", signed: build(court, client.Request{Query: "criminal_record", Subject: subj(pick.offender)}, now), want: "answered"},
		{agency: "court-changchun", label: "identity", signed: identityCourt, want: "answered"},
		{agency: "court-changchun", label: "unknown person", signed: build(court, client.Request{Query: "identity", Subject: schemas.Subject{IDNumber: pick.unknownID, Name: "张三"}}, now), want: "not_found/no_record"},
		{agency: "court-changchun", label: "query outside the allow-list", signed: build(court, client.Request{Query: "household", Subject: subj(pick.clean)}, now), want: "denied/query_not_allowed"},
		{agency: "court-changchun", label: "criminal record without a case reference", signed: build(court, client.Request{Query: "criminal_record", Subject: subj(pick.clean), Basis: "litigation", CaseRef: "none"}, now), want: "denied/case_reference_missing"},
		{agency: "court-changchun", label: "former names, quota of the day used up", signed: build(court, client.Request{Query: "former_names", Subject: subj(pick.renamed)}, now), want: "denied/quota_exceeded"},
		{agency: "civil-affairs-jilin", label: "docked agency without an agreement", signed: build(civil, client.Request{Query: "identity", Subject: subj(pick.clean)}, now), want: "denied/no_agreement"},
		{agency: "edu-jian", label: "household of a Ji'an resident for school admission (encrypted receipt)", signed: build(edu, client.Request{Query: "household", Subject: subj(pick.jian), Basis: "school-admission", CaseRef: "ADM-2026-0042"}, now), want: "answered"},
		{agency: "edu-jian", label: "residence of a Ji'an resident for school admission", signed: build(edu, client.Request{Query: "residence", Subject: subj(pick.jian), Basis: "school-admission", CaseRef: "ADM-2026-0043"}, now), want: "answered"},
		{agency: "edu-jian", label: "household of a resident of another county", signed: build(edu, client.Request{Query: "household", Subject: subj(pick.outsider), Basis: "school-admission", CaseRef: "ADM-2026-0044"}, now), want: "denied/outside_scope"},
		{agency: "edu-jian", label: "residence for a purpose not agreed", signed: build(edu, client.Request{Query: "residence", Subject: subj(pick.jian), Basis: "curiosity", CaseRef: "X-1"}, now), want: "denied/purpose_not_allowed"},
		{agency: "notary-dunhua", label: "residence under a suspended agreement", signed: build(notary, client.Request{Query: "residence", Subject: subj(pick.clean), Basis: "notarisation", CaseRef: "N-1"}, now), want: "denied/agreement_not_in_force"},
		{agency: "notary-dunhua", label: "household outside the agreed service hours", signed: build(notary, client.Request{Query: "household", Subject: subj(pick.clean), Basis: "notarisation", CaseRef: "N-2"}, now), want: "denied/outside_service_hours"},
		{agency: "social-security-baicheng", label: "hukou cancellation of a Baicheng resident, for a pension (prefecture level)", signed: build(pension, client.Request{Query: "hukou_cancellation", Subject: subj(pick.baicheng), Basis: "pension-eligibility", CaseRef: "PEN-2026-117"}, now), want: "answered"},
		{agency: "social-security-baicheng", label: "identity of a resident of another prefecture (its agreement keeps the default scope)", signed: build(pension, client.Request{Query: "identity", Subject: subj(pick.jian), Basis: "pension-eligibility", CaseRef: "PEN-2026-118"}, now), want: "denied/outside_scope"},
		{agency: "civil-affairs-shulan", label: "identity of a Shulan resident, for marriage registration (county level)", signed: build(marriage, client.Request{Query: "identity", Subject: subj(pick.shulan), Basis: "marriage-registration", CaseRef: "MR-2026-0031"}, now), want: "answered"},
		{agency: "edu-jian", label: "expired request", signed: build(edu, client.Request{Query: "identity", Subject: subj(pick.clean), Lifetime: time.Minute}, now.Add(-time.Hour)), want: "rejected/expired"},
		{agency: "notary-dunhua", label: "kinship of two relatives", signed: build(notary, client.Request{Query: "kinship", Subject: subj(pick.kinA), Related: ptr(subj(pick.kinB))}, now), want: "answered"},
		{agency: "notary-dunhua", label: "former names", signed: build(notary, client.Request{Query: "former_names", Subject: subj(pick.renamed)}, now), want: "answered"},
		{agency: "notary-dunhua", label: "hukou cancellation", signed: build(notary, client.Request{Query: "hukou_cancellation", Subject: subj(pick.cancelled)}, now), want: "answered"},
		{agency: "notary-dunhua", label: "kinship of a person with themself", signed: build(notary, client.Request{Query: "kinship", Subject: subj(pick.kinA), Related: ptr(subj(pick.kinA))}, now), want: "rejected/invalid_query"},
		{agency: "notary-dunhua", label: "identity, name does not match the ID", signed: build(notary, client.Request{Query: "identity", Subject: schemas.Subject{IDNumber: pick.kinB.IDNumber, Name: pick.kinB.Name + "某"}}, now), want: "not_found/no_record"},
		{agency: "notary-dunhua", label: "schema violation (bad check digit)", signed: build(notary, client.Request{Query: "identity", Subject: schemas.Subject{IDNumber: badCheckDigit(pick.clean.IDNumber), Name: pick.clean.Name}}, now), want: "rejected/schema_violation"},
	}
	cases = append(cases, &demoCase{agency: "notary-dunhua", label: "identity (its id is replayed below)", signed: replayed, want: "answered"})
	// Unauthenticated: to the dead-letter topic, never a receipt.
	forged := []byte(strings.TrimSuffix(string(answeredCourt.Bytes), string(answeredCourt.Bytes[len(answeredCourt.Bytes)-6:])) + "AAAAAA")
	stranger, _ := keys.Generate("court-changchun", "stolen", keys.EdDSA)
	deadLetters := []*demoCase{
		{agency: "court-changchun", label: "invalid signature", signed: client.Signed{Bytes: forged, Digest: broker.Digest(forged)}, want: "dead_letter/signature_invalid"},
		{agency: "court-changchun", label: "unknown key", signed: build(stranger, client.Request{Query: "identity", Subject: subj(pick.clean)}, now), want: "dead_letter/unknown_key"},
		{agency: "edu-jian", label: "court's request on the school's topic", signed: build(court, client.Request{Query: "identity", Subject: subj(pick.clean)}, now), want: "dead_letter/" + broker.ReasonTopicMismatch},
	}

	dlq, err := client.TailTopic(ctx, kcfg, svc.topics.DeadLetter())
	if err != nil {
		return nil, err
	}
	defer dlq.Close()
	clients := map[string]*client.Client{}
	watchers := map[string]*client.Watcher{}
	for _, a := range cfg.Agencies {
		c, err := newAgencyClient(ctx, cfg, a.ID, "")
		if err != nil {
			return nil, err
		}
		c.Kafka = kcfg
		defer c.Close()
		w, err := c.Watch(ctx)
		if err != nil {
			return nil, err
		}
		defer w.Close()
		clients[a.ID], watchers[a.ID] = c, w
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	want := map[string]map[string]string{}
	for _, c := range append(append([]*demoCase{}, cases...), deadLetters...) {
		if err := clients[c.agency].Send(waitCtx, c.signed); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(c.want, "dead_letter/") {
			if want[c.agency] == nil {
				want[c.agency] = map[string]string{}
			}
			want[c.agency][c.signed.Digest] = c.signed.ID
		}
	}
	receipts := map[string]*client.Receipt{}
	for agency, w := range watchers {
		if len(want[agency]) == 0 {
			continue
		}
		got, err := w.Await(waitCtx, want[agency])
		if err != nil {
			return nil, fmt.Errorf("receipts of %s: %w", agency, err)
		}
		for d, r := range got {
			receipts[d] = r
		}
	}
	for _, c := range cases {
		if r, ok := receipts[c.signed.Digest]; ok {
			c.got = r.Decision
			if r.Reason != "" {
				c.got += "/" + r.Reason
			}
			c.ok = c.got == c.want && r.RequestDigest == c.signed.Digest
			if ans, err := r.Answer(); c.ok && r.Decision == schemas.DecisionAnswered && (err != nil || len(ans) == 0) {
				c.got, c.ok = "answered without an answer", false
			}
			// Every answer and every denial but no_agreement cites the
			// co-signed agreement it rests on.
			cites := r.Decision != schemas.DecisionAnswered && r.Decision != schemas.DecisionDenied || r.Reason == policies.DenyNoAgreement ||
				(r.Agreement != nil && r.Agreement.Version > 0 && !strings.HasPrefix(r.Agreement.ID, "allowlist/"))
			if c.ok && !cites {
				c.got, c.ok = c.got+" without its agreement", false
			}
		}
	}
	// Dead letters: each unauthenticated message must arrive, by digest.
	pending := map[string]*demoCase{}
	for _, c := range deadLetters {
		pending[c.signed.Digest] = c
	}
	for len(pending) > 0 {
		rec, err := dlq.Next(waitCtx)
		if err != nil {
			return nil, fmt.Errorf("dead letters: %d missing: %w", len(pending), err)
		}
		var dl broker.DeadLetter
		if err := json.Unmarshal(rec.Value, &dl); err != nil {
			return nil, fmt.Errorf("dead letter: %w", err)
		}
		if c, ok := pending[dl.Digest]; ok {
			c.got, c.ok = "dead_letter/"+dl.Reason, "dead_letter/"+dl.Reason == c.want
			delete(pending, dl.Digest)
		}
	}
	// Phase two, after the originals were answered: the same bytes again
	// must bring back the stored receipt byte for byte, and the same id
	// with other content is a replay.
	first := receipts[answeredCourt.Digest]
	redelivery := &demoCase{agency: "court-changchun", label: "redelivered (same bytes as #1)", signed: answeredCourt, want: "same receipt"}
	again, err := clients["court-changchun"].Request(waitCtx, answeredCourt)
	if err != nil {
		return nil, err
	}
	if first != nil && again != nil {
		if string(again.Raw) == string(first.Raw) {
			redelivery.got, redelivery.ok = "same receipt", true
		} else {
			redelivery.got = "DIFFERENT receipt"
		}
	}
	replay := &demoCase{agency: "notary-dunhua", label: "replayed id, other content", signed: resignSameID(notary, replayed, subj(pick.renamed)), want: "rejected/replay"}
	r, err := clients["notary-dunhua"].Request(waitCtx, replay.signed)
	if err != nil {
		return nil, err
	}
	replay.got = r.Decision + "/" + r.Reason
	replay.ok = replay.got == replay.want
	all := append(append(cases, replay), deadLetters...)
	all = append(all, redelivery)
	fb, err := feedbackScenario(waitCtx, cfg, svc, clients["court-changchun"], court, receipts[identityCourt.Digest])
	if err != nil {
		return nil, err
	}
	all = append(all, fb.cases...)
	all = append(all, exchangeScenario(waitCtx, svc)...)
	decided := map[string]string{r.RequestDigest: r.Decision}
	for d, rc := range receipts {
		decided[d] = rc.Decision
	}
	for d, dec := range fb.decided {
		decided[d] = dec
	}
	return &scenarioReport{cases: all, receipts: len(receipts) + 3, dead: len(deadLetters) - len(pending), revoked: fb.revoked, decided: decided}, nil
}

// feedbackResult is what the feedback scenario did: its cases, and the
// request digest of the receipt it had revoked ("" if it failed).
type feedbackResult struct {
	cases   []*demoCase
	revoked string
	// decided are the decisions of its own messages, by digest.
	decided map[string]string
}

// feedbackScenario is phase three, result feedback: the court disputes the
// identity answer it got, the police data owner corrects the record, the
// broker revokes the receipt, and anyone checking the receipt afterwards
// against the broker's status list sees it revoked, with the reason.
func feedbackScenario(ctx context.Context, cfg *config.Config, svc *service, c *client.Client, court *keys.Private, identity *client.Receipt) (feedbackResult, error) {
	var res feedbackResult
	dc := &demoCase{agency: "court-changchun", label: "dispute of the identity answer (#3)", want: "answered/open"}
	rc := &demoCase{agency: "court-changchun", label: "the disputed receipt after police-jilin corrected the record", want: "revoked/corrected"}
	res.cases = []*demoCase{dc, rc}
	if identity == nil {
		dc.got, rc.got = "no identity receipt to dispute", "not disputed"
		return res, nil
	}
	ref := schemas.MessageRef{ID: identity.Envelope.ID, Digest: envelope.DigestOf(identity.Raw)}
	body, _ := json.Marshal(schemas.Dispute{Receipt: ref, Fields: []string{"status"}, Statement: "the defendant's registration was restored by the 2024 ruling", EvidenceRef: "(2024)吉01行终12号"})
	now := time.Now().UTC().Truncate(time.Second)
	raw, err := envelope.Sign(court, envelope.Payload{Type: schemas.TypeDispute, ID: ulid.Make().String(), Agency: "court-changchun",
		IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), Purpose: envelope.Purpose{Basis: "case-handling", CaseRef: "DEMO-DISPUTE"}, Body: body})
	if err != nil {
		return res, err
	}
	dc.signed = client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw}
	got, err := c.Request(ctx, dc.signed)
	if err != nil {
		return res, fmt.Errorf("dispute: %w", err)
	}
	res.decided = map[string]string{dc.signed.Digest: got.Decision}
	dc.got = got.Decision
	if got.Dispute != nil {
		dc.got += "/" + got.Dispute.Status
	} else if got.Reason != "" {
		dc.got += "/" + got.Reason
	}
	dc.ok = dc.got == dc.want
	if !dc.ok {
		rc.got = "not disputed"
		return res, nil
	}
	// The police side: the record is corrected, the resolution signed.
	corrected := json.RawMessage(fmt.Sprintf(`{"as_of": %q, "status": "active"}`, now.Format(time.RFC3339)))
	if _, err := resolveDispute(ctx, svc.feedback, cfg.KeysDir, got.Dispute.ID, schemas.DisputeCorrected,
		"registration restored in the register after the 2024 ruling", corrected, "", now); err != nil {
		return res, fmt.Errorf("resolve: %w", err)
	}
	// The broker's Notifier revokes the receipt within a round.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		rs, err := svc.store.Revocations(ctx, 0, math.MaxInt64)
		if err != nil {
			return res, err
		}
		if slices.ContainsFunc(rs, func(r store.Revocation) bool { return r.ReceiptID == ref.ID }) {
			break
		}
		select {
		case <-ctx.Done():
			rc.got = "not revoked"
			return res, nil
		case <-tick.C:
		}
	}
	// Anyone holding the receipt checks it against the signed status list.
	list, err := client.FetchStatusList(ctx, identity)
	if err != nil {
		return res, err
	}
	chk, err := client.CheckStatus(identity, list, c.Broker)
	switch {
	case err != nil:
		rc.got = "status: " + err.Error()
	case chk.Revoked:
		rc.got = "revoked/" + chk.Why.Reason
		rc.ok = rc.got == rc.want && chk.Why.Dispute == got.Dispute.ID
		res.revoked = identity.RequestDigest
	default:
		rc.got = "not revoked"
	}
	return res, nil
}

type demoPicks struct {
	clean, offender, cancelled, renamed, kinA, kinB records.Person
	// jian is a resident of Ji'an (220582), the education bureau's scope;
	// outsider one of elsewhere.
	jian, outsider records.Person
	// baicheng and shulan are registered in Baicheng (220800) and Shulan
	// (220283), each under an ID number of their own region.
	baicheng, shulan records.Person
	unknownID        string
}

// demoSubjects picks subjects for each scenario from the seeded dataset.
func demoSubjects(ds *records.Dataset) demoPicks {
	var p demoPicks
	byID := map[string]records.Person{}
	for _, x := range ds.Persons {
		byID[x.IDNumber] = x
	}
	active := func(x records.Person) bool { return x.CancelReason == "" }
	crimes := map[string]bool{}
	for _, c := range ds.CriminalRecords {
		crimes[c.PersonID] = true
	}
	renamed := map[string]bool{}
	for _, f := range ds.FormerNames {
		renamed[f.PersonID] = true
	}
	registered := map[string]string{}
	for _, h := range ds.Households {
		registered[h.ID] = h.RegionCode
	}
	for _, x := range ds.Persons {
		switch {
		case p.baicheng.IDNumber == "" && active(x) && strings.HasPrefix(x.IDNumber, "2208") && strings.HasPrefix(registered[x.HouseholdID], "2208"):
			p.baicheng = x
		case p.shulan.IDNumber == "" && active(x) && strings.HasPrefix(x.IDNumber, "220283") && registered[x.HouseholdID] == "220283":
			p.shulan = x
		case p.clean.IDNumber == "" && active(x) && !crimes[x.IDNumber] && !renamed[x.IDNumber]:
			p.clean = x
		case p.offender.IDNumber == "" && active(x) && crimes[x.IDNumber]:
			p.offender = x
		case p.cancelled.IDNumber == "" && !active(x):
			p.cancelled = x
		case p.renamed.IDNumber == "" && active(x) && renamed[x.IDNumber]:
			p.renamed = x
		case p.jian.IDNumber == "" && active(x) && strings.HasPrefix(x.IDNumber, "220582"):
			p.jian = x
		case p.outsider.IDNumber == "" && active(x) && !strings.HasPrefix(x.IDNumber, "2205"):
			p.outsider = x
		}
	}
	for _, k := range ds.Kinship {
		a, b := byID[k.PersonID], byID[k.RelativeID]
		if active(a) && active(b) {
			p.kinA, p.kinB = a, b
			break
		}
	}
	p.unknownID = unknownIDs(byID, 1)[0]
	return p
}

// unknownIDs returns n valid resident ID numbers (Dunhua, born 1985-06-15)
// that belong to nobody in byID: subjects the records cannot know.
func unknownIDs(byID map[string]records.Person, n int) []string {
	var out []string
	for seq := 999; seq > 0 && len(out) < n; seq-- {
		id := residentid.Make("222403", time.Date(1985, 6, 15, 0, 0, 0, 0, time.UTC), seq)
		if _, taken := byID[id]; !taken {
			out = append(out, id)
		}
	}
	return out
}

// resignSameID signs a different request under the id of s.
func resignSameID(k *keys.Private, s client.Signed, other schemas.Subject) client.Signed {
	parts := strings.Split(string(s.Bytes), ".")
	raw, _ := b64url(parts[1])
	var p envelope.Payload
	_ = json.Unmarshal(raw, &p)
	body, _ := json.Marshal(schemas.VerificationRequest{Query: "identity", Subject: other})
	p.Body = body
	out, err := envelope.Sign(k, p)
	if err != nil {
		panic(err)
	}
	return client.Signed{ID: p.ID, Digest: envelope.DigestOf(out), Bytes: out}
}

func badCheckDigit(id string) string {
	last := id[17]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return id[:17] + string(repl)
}

func ptr[T any](v T) *T { return &v }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printSourceCalls prints how often each record source was asked and what
// it said (certless_source_answers_total): a prefecture's own database
// answers its residents, the province those it does not hold.
func printSourceCalls(w io.Writer, svc *service) {
	calls := sourceCalls(svc.registry)
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Record sources asked (county → prefecture → province; the first that holds the subject answers):")
	for _, n := range names {
		fmt.Fprintf(w, "  %-20s found %3.0f  not held %3.0f\n", n, calls[n]["found"], calls[n]["not_found"])
	}
}

// sourceCalls reads certless_source_answers_total: by source, by outcome.
func sourceCalls(g prometheus.Gatherer) map[string]map[string]float64 {
	calls := map[string]map[string]float64{}
	fams, err := g.Gather()
	if err != nil {
		return calls
	}
	for _, f := range fams {
		if f.GetName() != "certless_source_answers_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var src, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "source":
					src = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			if calls[src] == nil {
				calls[src] = map[string]float64{}
			}
			calls[src][outcome] += m.GetCounter().GetValue()
		}
	}
	return calls
}
