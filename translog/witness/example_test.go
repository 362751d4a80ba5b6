package witness_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog/witness"
)

// A log asks a witness to cosign its first checkpoint, adds the cosignature
// to the checkpoint, and a verifier requires one of the named witnesses.
func Example() {
	// The log's Ed25519 note key; the origin line is the key name.
	skey, vkey, _ := note.GenerateKey(rand.Reader, "log.example/certless")
	logSigner, _ := note.NewSigner(skey)
	logVerifier, _ := note.NewVerifier(vkey)

	// A stand-in witness that cosigns whatever the log signed (a real one,
	// such as litewitness, also checks consistency with what it saw before).
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	cosigner, _ := torchwood.NewCosignatureSigner("witness.example/w1", priv)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, signed, _ := strings.Cut(string(body), "\n\n")
		n, err := note.Open([]byte(signed), note.VerifierList(logVerifier))
		if err != nil {
			http.Error(rw, "invalid signature", http.StatusForbidden)
			return
		}
		cosigned, _ := note.Sign(&note.Note{Text: n.Text}, cosigner)
		rw.Write(cosigned[len(n.Text)+1:])
	}))
	defer srv.Close()

	// The log's side: sign a checkpoint, get it cosigned, keep the result.
	w, err := witness.New(cosigner.Verifier().String(), srv.URL)
	if err != nil {
		panic(err)
	}
	text := torchwood.Checkpoint{Origin: "log.example/certless", Tree: tlog.Tree{N: 1, Hash: tlog.RecordHash([]byte("hello"))}}.String()
	signed, _ := note.Sign(&note.Note{Text: text}, logSigner)
	cosigs, err := w.AddCheckpoint(context.Background(), 0, nil, signed)
	if err != nil {
		panic(err)
	}
	bundle, _ := witness.AppendCosignatures(signed, cosigs...)

	// The verifier's side: the log's key and 1 of the named witnesses.
	v, err := witness.Verify(bundle, logVerifier, []note.Verifier{w.Verifier}, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Origin, v.Tree.N, v.Witnesses())
	// Output:
	// log.example/certless 1 [witness.example/w1]
}
