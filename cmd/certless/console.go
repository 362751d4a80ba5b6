package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/console"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/report"
	"github.com/certless/certless/schemas/residentid"
	"github.com/certless/certless/statuslist"
	"github.com/certless/certless/translog"
)

// newConsole wires the auditor console to the running broker: its store
// and log, its keys, its directory and its report builder.
func (s *service) newConsole() (*console.Handler, error) {
	keyer := broker.SubjectKeyer{Secret: s.subjectSecret}
	return console.New(console.Options{
		Broker: s.cfg.BrokerID,
		Store:  s.store,
		Agencies: func() []console.Agency {
			snap := s.docking.state().snap
			out := make([]console.Agency, 0, len(snap.Agencies))
			for _, id := range slices.Sorted(maps.Keys(snap.Agencies)) {
				a := snap.Agencies[id]
				out = append(out, console.Agency{ID: id, Name: a.Name, Level: a.Level, Region: a.Region})
			}
			return out
		},
		Checks: s.receiptChecks,
		Bundle: func(ctx context.Context, d store.Decision) ([]byte, error) {
			b, err := receiptBundle(ctx, s.store, d.Digest, "", s.cfg.Transparency.Quorum)
			if err != nil {
				return nil, err
			}
			return json.MarshalIndent(b, "", "  ")
		},
		Policy:      s.logPolicy,
		Report:      s.consoleReport,
		SubjectKeys: s.subjectKeys,
		SubjectDigest: func(id string) string {
			return translog.Digest([]byte(keyer.Key(adapters.Query{Type: "subject_lookup", Subject: adapters.Subject{IDNumber: id}})))
		},
		LogLookup: func(ctx context.Context, l console.Lookup) (int64, error) { return logLookup(ctx, s.store, l) },
		ValidID:   func(id string) error { return residentid.Validate(id) },
		Log:       s.log.Named("console"),
	})
}

// subjectKeys are the keys the decisions about the person with ID number
// id are stored under: one per query type, and for kinship with related
// (either way round) when it is given.
func (s *service) subjectKeys(id, related string) []string {
	keyer := broker.SubjectKeyer{Secret: s.subjectSecret}
	var out []string
	for _, t := range adapters.AllQueryTypes() {
		if t != adapters.QueryKinship {
			out = append(out, keyer.Key(adapters.Query{Type: t, Subject: adapters.Subject{IDNumber: id}}))
		}
	}
	if related != "" {
		out = append(out,
			keyer.Key(adapters.Query{Type: adapters.QueryKinship, Subject: adapters.Subject{IDNumber: id}, Related: &adapters.Subject{IDNumber: related}}),
			keyer.Key(adapters.Query{Type: adapters.QueryKinship, Subject: adapters.Subject{IDNumber: related}, Related: &adapters.Subject{IDNumber: id}}))
	}
	return out
}

// logLookup appends a subject look-up to the transparency log (kind
// subject_lookup): the auditor, the case reference (as a token, or its
// digest when it holds other characters), the subject's keyed digest, how
// many decisions were found.
func logLookup(ctx context.Context, log leafAppender, l console.Lookup) (int64, error) {
	leaf, err := translog.Leaf{Kind: translog.KindSubjectLookup, Agency: translog.Token("auditor:" + l.User),
		Reason: translog.Token(l.CaseReference), Subject: l.Subject, Outcome: "found:" + strconv.Itoa(l.Found),
		Time: translog.FormatTime(l.At)}.Marshal()
	if err != nil {
		return 0, err
	}
	return log.AppendLeaf(ctx, "subject_lookup:"+l.At.UTC().Format(time.RFC3339Nano)+":"+translog.Digest(leaf), leaf)
}

// logPolicy is the log's key and the configured witnesses' keys.
func (s *service) logPolicy() (translog.Policy, error) {
	vk, err := s.logKey.verifierKey()
	if err != nil {
		return translog.Policy{}, err
	}
	v, err := note.NewVerifier(vk)
	if err != nil {
		return translog.Policy{}, err
	}
	ws, err := configWitnesses(s.cfg)
	if err != nil {
		return translog.Policy{}, err
	}
	return translog.Policy{Origin: s.cfg.LogOrigin(), Log: v, Witnesses: ws, Quorum: s.cfg.Transparency.Quorum}, nil
}

// receiptChecks verifies a decision's receipt as `certless receipt verify`
// does its bundle, with the broker's published keys: signature, leaf,
// inclusion, checkpoint, cosignatures, the validity window at the time of
// the decision, and revocation against the status list as it stands now.
func (s *service) receiptChecks(ctx context.Context, d store.Decision) []console.Check {
	fail := func(name string, err error) []console.Check { return []console.Check{{Name: name, Err: err}} }
	jwks, err := s.keys.JWKS(s.cfg.BrokerID)
	if err != nil {
		return fail("keys", err)
	}
	bk, err := client.BrokerKeys(s.cfg.BrokerID, jwks)
	if err != nil {
		return fail("keys", err)
	}
	pol, err := s.logPolicy()
	if err != nil {
		return fail("log key", err)
	}
	b, err := receiptBundle(ctx, s.store, d.Digest, "", pol.Quorum)
	if err != nil {
		return fail(client.CheckInclusion, err)
	}
	checks, rec := client.VerifyBundle(b, bk, pol, client.Expect{Now: d.DecidedAt})
	out := make([]console.Check, 0, len(checks)+1)
	for _, c := range checks {
		out = append(out, console.Check{Name: c.Name, Err: c.Err, Note: c.Note})
	}
	// Revocation now, against the list as the broker publishes it.
	st := statusVerdict(rec, bk, func() ([]byte, error) {
		return signedStatusList(ctx, s.store, rec.CredentialStatus.StatusListCredential, s.cfg.BrokerID, s.key.SigningKey(), d.StatusIndex/statuslist.Size)
	})
	return append(out, console.Check{Name: st.Name, Err: st.Err, Note: st.Note})
}

// consoleReport builds a report from the broker's own store and signs it
// with the broker's key, as `certless report` does.
func (s *service) consoleReport(ctx context.Context, r console.ReportRequest) (string, []byte, []byte, *report.Report, error) {
	deadline := report.DefaultDeadline
	if s.cfg.Report.Deadline > 0 {
		deadline = s.cfg.Report.Deadline.D()
	}
	rep, err := buildReport(ctx, s.cfg, s.store, r.Filter, r.Period, deadline, nil)
	if err != nil {
		return "", nil, nil, nil, err
	}
	file, sig, err := writeSignedReport(rep, r.Format, s.key.SigningKey())
	if err != nil {
		return "", nil, nil, nil, err
	}
	return reportFileName(r.Period, r.Format), file, sig, rep, nil
}

// writeSignedReport is the report's file in format and the broker's
// detached JWS over its bytes.
func writeSignedReport(r *report.Report, format string, key *keys.Private) ([]byte, []byte, error) {
	var b bytes.Buffer
	if err := report.Write(&b, r, format); err != nil {
		return nil, nil, err
	}
	sig, err := report.SignDetached(key, b.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return b.Bytes(), append(sig, '\n'), nil
}

func reportFileName(p report.Period, format string) string {
	return fmt.Sprintf("certless-report-%s-%s.%s", p.From.In(report.Beijing).Format("20060102"), p.To.In(report.Beijing).Format("20060102"), format)
}
