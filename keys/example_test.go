package keys_test

import (
	"crypto/ed25519"
	"fmt"
	"log"
	"os"
	"regexp"
	"time"

	"github.com/certless/certless/keys"
)

func ExampleGenerate() {
	k, err := keys.Generate("court-a", "", "") // generated key id, EdDSA
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.Agency, k.Alg, k.Use())
	// k<UTC creation time>-<6 random hex digits>: newer keys sort last.
	fmt.Println(regexp.MustCompile(`^court-a/k\d{8}T\d{6}Z-[0-9a-f]{6}$`).MatchString(k.KID()))
	// Output:
	// court-a EdDSA sig
	// true
}

// exampleKey is a fixed Ed25519 key, so that the output stays the same.
func exampleKey(keyID string) keys.Public {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, keyID)
	return keys.Public{
		Agency: "court-a",
		KeyID:  keyID,
		Alg:    keys.EdDSA,
		Key:    ed25519.NewKeyFromSeed(seed).Public(),
	}
}

func ExampleMarshalJWKS() {
	old, current := exampleKey("k20261118-3fa9c2"), exampleKey("k20261201T081544Z-77e0d1")
	old.RevokedAt = time.Date(2026, 12, 1, 8, 15, 44, 0, time.UTC)
	b, err := keys.MarshalJWKS([]keys.Public{current, old})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// {
	//   "keys": [
	//     {
	//       "alg": "EdDSA",
	//       "crv": "Ed25519",
	//       "kid": "court-a/k20261118-3fa9c2",
	//       "kty": "OKP",
	//       "revoked_at": "2026-12-01T08:15:44Z",
	//       "use": "sig",
	//       "x": "uvcCDccV_s7rBs2vBfX0JZZaVfgsXn6XRVoc30CUoOI"
	//     },
	//     {
	//       "use": "sig",
	//       "kty": "OKP",
	//       "kid": "court-a/k20261201T081544Z-77e0d1",
	//       "crv": "Ed25519",
	//       "alg": "EdDSA",
	//       "x": "xwNeS61T8tedlARTDmWOGqRSUDl1DjexNfEd0G_egwY"
	//     }
	//   ]
	// }
}

func ExampleParseJWKS() {
	pubs, err := keys.ParseJWKS([]byte(`{"keys": [
	  {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
	   "kid": "court-a/k20261118-3fa9c2", "alg": "EdDSA", "use": "sig",
	   "revoked_at": "2026-12-01T08:15:44Z"}
	]}`))
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pubs {
		issued := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
		fmt.Println(p.KID(), p.Alg, p.Use(), p.Revoked())
		fmt.Println("vouches for", issued.Format(time.DateOnly), p.ValidAt(issued))
		fmt.Println("vouches for", p.RevokedAt.Format(time.RFC3339), p.ValidAt(p.RevokedAt))
	}
	// Output:
	// court-a/k20261118-3fa9c2 EdDSA sig true
	// vouches for 2026-11-30 true
	// vouches for 2026-12-01T08:15:44Z false
}

func ExampleRegistry_Reload() {
	dir, err := os.MkdirTemp("", "keys")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if _, err := keys.GenerateInDir(dir, "court-a", "k1", keys.EdDSA); err != nil {
		log.Fatal(err)
	}
	reg, err := keys.LoadDir(dir) // as the broker does at start
	if err != nil {
		log.Fatal(err)
	}

	// `certless keys generate` and `certless keys revoke` while it runs:
	if _, err := keys.GenerateInDir(dir, "court-a", "k2", keys.EdDSA); err != nil {
		log.Fatal(err)
	}
	if err := keys.Revoke(dir, "court-a/k1", time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)); err != nil {
		log.Fatal(err)
	}

	changes, err := reg.Reload(dir) // what WatchDir does when the files change
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range changes {
		fmt.Println(c)
	}
	// Output:
	// revoked court-a/k1 (EdDSA) at 2026-12-01T08:00:00Z
	// added court-a/k2 (EdDSA)
}

func ExampleValidateImport() {
	// An agency's export that still holds its private key ("d").
	_, err := keys.ValidateImport("court-a", []byte(`{"keys": [
	  {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
	   "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
	   "kid": "court-a/hsm-2026", "alg": "EdDSA"}
	]}`))
	fmt.Println(err)
	// Output:
	// keys: import: key 0 (kid "court-a/hsm-2026"): has the private member "d": import public keys only, the private key stays with the agency
}
