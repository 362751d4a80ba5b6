package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/keys"
)

// TestDockingView: what a broker derives from a directory snapshot — the
// request topics, keys from the directory together with the keys folder (a
// revocation in either wins), receipt encryption for an agency with an
// encryption key, suspension, and a topic-set change signalled once.
func TestDockingView(t *testing.T) {
	now := time.Now()
	dirKey, _ := keys.Generate("court-jian", "d1", keys.EdDSA)
	folderOnly, _ := keys.Generate("court-jian", "f1", keys.EdDSA)
	both, _ := keys.Generate("court-jian", "b1", keys.EdDSA)
	enc, _ := keys.Generate("court-jian", "e1", keys.ECDHES)
	brokerKey, _ := keys.Generate("certless", "k1", keys.EdDSA)

	revokedInFolder := both.Public
	revokedInFolder.RevokedAt = now.Add(-time.Minute)
	folder, err := keys.NewRegistry(folderOnly.Public, revokedInFolder, brokerKey.Public)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS([]keys.Public{dirKey.Public, both.Public})
	encSet, _ := keys.MarshalJWKS([]keys.Public{enc.Public})
	var one struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(encSet, &one); err != nil {
		t.Fatal(err)
	}
	topics := broker.Topics{Prefix: "t."}
	d := newDocking(folder, topics.Requests)
	if d.Confidential("court-jian") {
		t.Fatal("confidential before any snapshot")
	}
	problems := d.apply(&directory.Snapshot{Version: 3, Agencies: map[string]directory.Agency{
		"court-jian":    {ID: "court-jian", Level: "county", Region: "220582", Status: directory.Active, JWKS: jwks, EncryptionKey: one.Keys[0]},
		"notary-dunhua": {ID: "notary-dunhua", Level: "county", Region: "222403", Status: directory.Suspended, JWKS: []byte(`{"keys":[]}`)},
	}})
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	select {
	case <-d.topicsChanged:
	default:
		t.Fatal("a new topic set was not signalled")
	}
	if got := d.topics(); len(got) != 2 || got[0] != "t.court-jian.requests" || got[1] != "t.notary-dunhua.requests" {
		t.Fatalf("topics %v", got)
	}
	for kid, want := range map[string]bool{dirKey.KID(): false, folderOnly.KID(): false, both.KID(): true, brokerKey.KID(): false} {
		p, ok := d.Lookup(kid)
		if !ok || p.Revoked() != want {
			t.Errorf("%s: found %v, revoked %v; want found, revoked %v", kid, ok, p.Revoked(), want)
		}
	}
	if _, ok := d.Lookup("court-jian/nope"); ok {
		t.Error("an unknown kid was found")
	}
	if !d.Confidential("court-jian") || d.Confidential("notary-dunhua") {
		t.Error("confidentiality does not follow the directory's encryption keys")
	}
	if p, err := d.EncryptionKey("court-jian", now); err != nil || p.KID() != enc.KID() {
		t.Errorf("encryption key %v, %v", p.KID(), err)
	}
	if a, ok := d.Docked("notary-dunhua"); !ok || !a.Suspended || a.Region != "222403" {
		t.Errorf("notary: %+v %v", a, ok)
	}
	if _, ok := d.Docked("bank"); ok {
		t.Error("an undocked agency is docked")
	}

	// The same topics again (a suspension lifted): no rejoin.
	d.apply(&directory.Snapshot{Version: 4, Agencies: map[string]directory.Agency{
		"court-jian":    {ID: "court-jian", Level: "county", Region: "220582", Status: directory.Active, JWKS: jwks},
		"notary-dunhua": {ID: "notary-dunhua", Level: "county", Region: "222403", Status: directory.Active, JWKS: []byte(`{"keys":[]}`)},
	}})
	select {
	case <-d.topicsChanged:
		t.Fatal("an unchanged topic set was signalled")
	default:
	}
	if d.Confidential("court-jian") {
		t.Error("still confidential after the encryption key left the directory")
	}
}
