package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
)

// policeOwner is the police data owner of the sample records: the
// provider party of every sample agreement.
const policeOwner = "police-jilin"

// samplePurposes are the lawful purposes each sample agency's agreement
// lists, beside the purposes of its allow entries.
var samplePurposes = map[string][]string{
	"court-changchun": {"case-handling", "litigation", "criminal-proceedings"},
	"edu-jian":        {"case-handling", "school-admission"},
	"notary-dunhua":   {"case-handling", "notarisation"},
}

// sampleSchedules are the periodic exchanges of the sample agreements: the
// Baicheng social security bureau receives its prefecture's hukou
// cancellations every day at 01:00 Beijing time, so pensions stop.
var sampleSchedules = map[string]string{
	"social-security-baicheng": "schedules:\n  - name: daily-cancellations\n    query: hukou_cancellation\n    cron: \"0 1 * * *\"\n",
}

// defaultScope are the sample agencies whose agreements set no scope: they
// reach the residents of their own region in the directory only.
var defaultScope = map[string]bool{"social-security-baicheng": true, "civil-affairs-shulan": true}

// sampleAgreement is the co-signed agreement of a sample agency with the
// police data owner: the agency's allow entries as agreed terms, the
// court's criminal records only with a case reference, the county
// education bureau's household and residence queries only about residents
// of its county, every other query about residents of the whole province.
func sampleAgreement(a config.Agency, from time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %s/records\nversion: 1\ntitle: %q\n", a.ID, a.Name+" — police records for its lawful purposes")
	fmt.Fprintf(&b, "parties:\n  requester: %s\n  provider: %s\n", a.ID, policeOwner)
	b.WriteString("queries:\n")
	for _, al := range a.Allow {
		purposes := al.Purposes
		if len(purposes) == 0 {
			purposes = samplePurposes[a.ID]
		}
		fields := al.Fields
		if len(fields) == 0 {
			fields = adapters.QueryType(al.Query).Fields()
		}
		fmt.Fprintf(&b, "  - query: %s\n    purposes: [%s]\n    fields: [%s]\n", al.Query, strings.Join(purposes, ", "), strings.Join(fields, ", "))
		if a.ID == "court-changchun" && al.Query == string(adapters.QueryCriminalRecord) {
			b.WriteString("    case_ref_required: true\n")
		}
		// Without a scope an agency reaches the residents of its own
		// region in the directory only; the samples widen that to the
		// province, but for a county bureau's household and residence
		// queries, which stay with its county.
		switch {
		case defaultScope[a.ID]:
		case a.Level == "county" && (al.Query == string(adapters.QueryHousehold) || al.Query == string(adapters.QueryResidence)):
			fmt.Fprintf(&b, "    scope: [%q]\n", a.Region)
		default:
			fmt.Fprintf(&b, "    scope: [%q]\n", regions.Jilin)
		}
	}
	if sched, ok := sampleSchedules[a.ID]; ok {
		// In force since the start of the synthetic records' last half
		// year, so its periods have changes to carry.
		from = time.Date(2026, 1, 1, 0, 0, 0, 0, policies.Beijing)
		b.WriteString(sched)
	}
	fmt.Fprintf(&b, "quotas:\n  per_day: 1000000\nvalidity:\n  from: %q\n  until: %q\nstatus: active\n",
		from.UTC().Format(time.RFC3339), from.AddDate(2, 0, 0).UTC().Format(time.RFC3339))
	return []byte(b.String())
}

// ensureAgreements writes and co-signs the sample agreements into the
// policies folder on first run: each sample agency with the police data
// owner, signed by both with their keys from the keys folder.
func ensureAgreements(cfg *config.Config, log *zap.Logger) error {
	if err := os.MkdirAll(cfg.PoliciesDir, 0o755); err != nil {
		return fmt.Errorf("policies folder: %w", err)
	}
	now := time.Now()
	from := now.Add(-time.Hour).Truncate(time.Second)
	for _, a := range cfg.Agencies {
		if len(a.Allow) == 0 {
			continue
		}
		path := filepath.Join(cfg.PoliciesDir, a.ID+"-records.v1.yaml")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		doc := sampleAgreement(a, from)
		if _, err := policies.Parse(doc); err != nil {
			return fmt.Errorf("sample agreement of %s: %w", a.ID, err)
		}
		if err := writeCosigned(cfg, path, doc, a.ID, now); err != nil {
			return fmt.Errorf("sample agreement of %s: %w", a.ID, err)
		}
		log.Info("wrote co-signed sample agreement", zap.String("path", path), zap.String("digest", policies.Digest(doc)))
	}
	return nil
}

// writeCosigned writes doc to path and its co-signatures beside it: the
// requester's and the police data owner's, with their current keys.
func writeCosigned(cfg *config.Config, path string, doc []byte, requester string, now time.Time) error {
	var sigs []byte
	for _, party := range []string{requester, policeOwner} {
		k, err := keys.SigningKey(cfg.KeysDir, party, now)
		if err != nil {
			return err
		}
		if sigs, err = policies.Sign(doc, sigs, k, now); err != nil {
			return fmt.Errorf("sign as %s: %w", party, err)
		}
	}
	// Signatures first, each file whole (rename): a broker polling the
	// folder never sees the document without them.
	if err := writeAtomic(path+policies.SignaturesSuffix, sigs); err != nil {
		return err
	}
	return writeAtomic(path, doc)
}

// demoAgreements writes, co-signs and loads the agreements that let the
// demo show the denials the sample agreements cannot: the notary's
// residence agreement suspended by the police, its household agreement
// outside its service hours now, and the court's former-names agreement
// whose daily quota of 1 is used up (taken directly from the store). The
// files of an earlier demo are replaced.
func demoAgreements(ctx context.Context, cfg *config.Config, svc *service, now time.Time) error {
	old, _ := filepath.Glob(filepath.Join(cfg.PoliciesDir, "demo-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	owner, err := keys.SigningKey(cfg.KeysDir, policeOwner, now)
	if err != nil {
		return err
	}
	stamp := now.UTC().Format("20060102T150405")
	from, until := now.Add(-time.Hour).UTC().Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339)
	// A one-hour window six hours from now, Beijing time: closed now.
	h := (now.In(policies.Beijing).Hour() + 6) % 24
	to := fmt.Sprintf("%02d:00", h+1)
	if h == 23 {
		to = "24:00"
	}
	docs := []struct {
		name, requester, body string
		suspend               bool
	}{
		{"demo-suspended", "notary-dunhua", "queries:\n  - query: residence\n    purposes: [notarisation]\n    fields: [as_of, residences]\n    scope: [\"220000\"]\n", true},
		{"demo-hours", "notary-dunhua", fmt.Sprintf("queries:\n  - query: household\n    purposes: [notarisation]\n    fields: [as_of, registered, members]\n    scope: [\"220000\"]\nservice_hours:\n  from: \"%02d:00\"\n  to: %q\n", h, to), false},
		{"demo-quota", "court-changchun", "queries:\n  - query: former_names\n    purposes: [case-handling]\n    fields: [as_of, has_former_names, former_names]\n    scope: [\"220000\"]\nquotas:\n  per_day: 1\n", false},
	}
	for _, d := range docs {
		id := fmt.Sprintf("%s/%s-%s", d.requester, d.name, stamp)
		doc := []byte(fmt.Sprintf("id: %s\nversion: 1\ntitle: %q\nparties:\n  requester: %s\n  provider: %s\n%svalidity:\n  from: %q\n  until: %q\nstatus: active\n",
			id, "Demo: "+d.name, d.requester, policeOwner, d.body, from, until))
		a, err := policies.Parse(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		path := filepath.Join(cfg.PoliciesDir, d.name+".v1.yaml")
		if d.suspend {
			// The suspension before the document: it is never in force.
			st, err := policies.SignStatement(doc, a, policies.StatusSuspended, owner, now.Add(-time.Minute))
			if err != nil {
				return err
			}
			if err := writeAtomic(path+policies.StatusSuffix, append(st, '\n')); err != nil {
				return err
			}
		}
		if err := writeCosigned(cfg, path, doc, d.requester, now); err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		if a.Quotas.Limited() {
			// The day's one use, taken before the demo asks.
			if _, err := svc.store.Take(ctx, d.requester, id, broker.QuotaVersion, store.Limits{PerDay: int(a.Quotas.PerDay)}, now); err != nil {
				return err
			}
		}
	}
	svc.reportAgreements(svc.agreements.Reload())
	return nil
}
