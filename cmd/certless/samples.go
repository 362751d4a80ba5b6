package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
)

// Sample agencies of `certless dev` and `certless demo`, at the three levels
// of Jilin and across five of its prefectures: the provincial civil affairs
// department; Changchun's intermediate court and Baicheng's social security
// bureau (prefectures); Ji'an's education bureau (Tonghua), Dunhua's notary
// office (Yanbian) and Shulan's civil affairs bureau (Jilin City), counties.
func sampleAgencies() []config.Agency {
	return []config.Agency{
		{ID: "court-changchun", Name: "Changchun Intermediate People's Court", Kind: "court", Level: "prefecture", Region: "220100",
			Allow: []config.Allow{
				{Query: "criminal_record", Fields: []string{"has_criminal_record", "as_of", "records"}},
				{Query: "identity"},
				{Query: "hukou_cancellation"},
			}},
		{ID: "edu-jian", Name: "Ji'an City Education Bureau", Kind: "education", Level: "county", Region: "220582", EncryptReceipts: true,
			Allow: []config.Allow{
				{Query: "household", Fields: []string{"household_id", "members", "region_code", "region_name", "as_of"}, Purposes: []string{"school-admission"}},
				{Query: "residence", Purposes: []string{"school-admission"}},
				{Query: "identity", Fields: []string{"id_name_match", "as_of"}},
			}},
		// Docked, with no agreement yet: its requests are denied no_agreement.
		{ID: "civil-affairs-jilin", Name: "Jilin Provincial Department of Civil Affairs", Kind: "civil_affairs", Level: "province", Region: "220000"},
		{ID: "notary-dunhua", Name: "Dunhua Notary Office", Kind: "notary", Level: "county", Region: "222403",
			Allow: []config.Allow{
				{Query: "kinship"},
				{Query: "former_names"},
				{Query: "hukou_cancellation", Fields: []string{"cancelled", "reason", "date", "as_of"}},
				{Query: "identity", Fields: []string{"id_name_match", "status", "as_of"}},
			}},
		// Pension checks: its agreement keeps the default scope, the
		// residents of its own prefecture.
		{ID: "social-security-baicheng", Name: "Baicheng Human Resources and Social Security Bureau", Kind: "social_security", Level: "prefecture", Region: "220800",
			Allow: []config.Allow{
				{Query: "hukou_cancellation", Purposes: []string{"pension-eligibility"}},
				{Query: "identity", Fields: []string{"id_name_match", "status", "as_of"}, Purposes: []string{"pension-eligibility"}},
			}},
		// Marriage registration: its own county's residents (default scope).
		{ID: "civil-affairs-shulan", Name: "Shulan Civil Affairs Bureau", Kind: "civil_affairs", Level: "county", Region: "220283",
			Allow: []config.Allow{
				{Query: "identity", Fields: []string{"id_name_match", "status", "as_of"}, Purposes: []string{"marriage-registration"}},
				{Query: "kinship", Purposes: []string{"marriage-registration"}},
			}},
	}
}

// sampleSources are the record sources of dev and demo: the provincial
// population database holding every Jilin resident, and the databases of
// five prefecture bureaus holding the residents registered in their
// prefecture (each its own SQLite file seeded with that part of the
// synthetic records). A request goes to the subject's prefecture first and
// falls back to the province (see broker.Router).
func sampleSources(dataDir string) []config.Adapter {
	out := []config.Adapter{{
		Name: "jilin-records", Type: "sql", Level: "province", Region: "220000",
		Options: map[string]any{"dsn": filepath.Join(dataDir, "records.db")},
	}}
	for _, p := range []struct{ name, region string }{
		{"changchun-records", "220100"}, {"jilin-city-records", "220200"}, {"tonghua-records", "220500"},
		{"baicheng-records", "220800"}, {"yanbian-records", "222400"},
	} {
		out = append(out, config.Adapter{Name: p.name, Type: "sql", Level: "prefecture", Region: p.region,
			Options: map[string]any{"dsn": filepath.Join(dataDir, "records-"+p.region+".db")}})
	}
	return out
}

// devPersons and devSeed fix the synthetic records dev and demo seed, so
// the demo can pick its subjects from the same deterministic dataset.
const (
	devPersons = 5000
	devSeed    = 1
)

// ensureDevData prepares the data folder of dev and demo on first run: the
// generated config, the broker's and sample agencies' keys, and the seeded
// synthetic police records. Later runs reuse all of it.
func ensureDevData(ctx context.Context, dataDir string, log *zap.Logger) (*config.Config, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	path := filepath.Join(dataDir, config.FileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		cfg := config.Default(dataDir)
		cfg.Log.Format = "console"
		cfg.Agencies = sampleAgencies()
		cfg.Adapters = sampleSources(dataDir)
		// The auditor console's login: a web configuration file in
		// Prometheus's format with one auditor, its password beside it.
		web, err := writeDevWebConfig(dataDir)
		if err != nil {
			return nil, err
		}
		cfg.HTTP.WebConfigFile, cfg.HTTP.Auditors = web, []string{devAuditor}
		log.Info("wrote the auditor console's login", zap.String("web_config", web), zap.String("user", devAuditor),
			zap.String("password_file", filepath.Join(dataDir, devPasswordFile)))
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("generated config: %w", err)
		}
		if err := cfg.Write(path); err != nil {
			return nil, err
		}
		log.Info("wrote config", zap.String("path", path))
	}
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	want := []string{cfg.BrokerID, policeOwner}
	for _, a := range cfg.Agencies {
		want = append(want, a.ID)
	}
	for _, id := range want {
		if _, err := keys.SigningKey(cfg.KeysDir, id, now); err == nil {
			continue
		}
		if _, err := keys.GenerateInDir(cfg.KeysDir, id, "", keys.EdDSA); err != nil {
			return nil, fmt.Errorf("generate key for %s: %w", id, err)
		}
		log.Info("generated signing key", zap.String("agency", id), zap.String("dir", cfg.KeysDir))
	}
	reg, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	for _, a := range cfg.Agencies {
		if !a.EncryptReceipts {
			continue
		}
		if _, err := reg.EncryptionKey(a.ID, now); err == nil {
			continue
		}
		if _, err := keys.GenerateInDir(cfg.KeysDir, a.ID, "", keys.ECDHES); err != nil {
			return nil, fmt.Errorf("generate encryption key for %s: %w", a.ID, err)
		}
		log.Info("generated receipt encryption key", zap.String("agency", a.ID))
	}
	if err := ensureLogKey(cfg, log); err != nil {
		return nil, err
	}
	if err := ensureAgreements(cfg, log); err != nil {
		return nil, err
	}
	if err := ensureSeededRecords(ctx, cfg, log); err != nil {
		return nil, err
	}
	return cfg, nil
}
