package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/keys"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate, import, publish and revoke agency and broker keys",
		Args:  cobra.NoArgs,
	}
	var dir, agency, keyID, alg string
	keysDir := func() (string, error) {
		if dir != "" {
			return dir, nil
		}
		cfg, err := g.loadConfig(os.Getenv)
		if err != nil {
			return "", err
		}
		return cfg.KeysDir, nil
	}
	gen := &cobra.Command{
		Use:   "generate --agency ID [--alg EdDSA|ES256|ECDH-ES+A256KW] [--key-id ID] [--dir DIR]",
		Short: "Generate a key pair: the private JWK (0600) and the public key added to <agency>.jwks.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agency == "" {
				return usagef("--agency is required")
			}
			a := keys.Alg(alg)
			if !a.Valid() {
				return usagef("--alg %q: want EdDSA, ES256 or ECDH-ES+A256KW", alg)
			}
			d, err := keysDir()
			if err != nil {
				return err
			}
			k, err := keys.GenerateInDir(d, agency, keyID, a)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "generated %s (%s, use %s)\n  private: %s\n  public:  %s\n", k.KID(), k.Alg, k.Use(),
				keys.PrivatePath(d, agency, k.KeyID), keys.JWKSPath(d, agency))
			pickUp(g.stdout, d)
			return nil
		},
	}
	gen.Flags().StringVar(&agency, "agency", "", "agency id (or the broker id for the broker's own key)")
	gen.Flags().StringVar(&keyID, "key-id", "", "key id (default: k<UTC time>-<random>, e.g. k20261201T081544Z-3fa9c2, so newer keys sort last)")
	gen.Flags().StringVar(&alg, "alg", string(keys.EdDSA), "EdDSA (default), ES256, or ECDH-ES+A256KW for a receipt encryption key")
	gen.Flags().StringVar(&dir, "dir", "", "keys folder (default: keys_dir of the configuration)")

	jwks := &cobra.Command{
		Use:   "jwks --agency ID [--dir DIR]",
		Short: "Print an agency's (or the broker's) public JWK Set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agency == "" {
				return usagef("--agency is required")
			}
			d, err := keysDir()
			if err != nil {
				return err
			}
			b, err := keys.ReadJWKS(d, agency)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(append(b, '\n'))
			return err
		},
	}
	jwks.Flags().StringVar(&agency, "agency", "", "agency id")
	jwks.Flags().StringVar(&dir, "dir", "", "keys folder (default: keys_dir of the configuration)")

	var kid, at string
	revoke := &cobra.Command{
		Use:   "revoke AGENCY/KEY [--at RFC3339] [--dir DIR]",
		Short: "Revoke a key: it verifies nothing issued after the revocation time",
		Long: `Revoke a key: it verifies nothing issued at or after the revocation time,
and keeps verifying what was issued before it. The kid may be given as the
argument or with --kid.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if kid != "" && kid != args[0] {
					return usagef("two kids: %q and --kid %q", args[0], kid)
				}
				kid = args[0]
			}
			if kid == "" {
				return usagef("the kid to revoke is required (AGENCY/KEY)")
			}
			when, err := parseTimeFlag(at)
			if err != nil {
				return usagef("--at: %v", err)
			}
			d, err := keysDir()
			if err != nil {
				return err
			}
			if err := keys.Revoke(d, kid, when); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "revoked %s at %s\n", kid, when.Format("2006-01-02T15:04:05Z07:00"))
			pickUp(g.stdout, d)
			return nil
		},
	}
	revoke.Flags().StringVar(&kid, "kid", "", "the key to revoke, as <agency>/<key-id> (or give it as the argument)")
	revoke.Flags().StringVar(&at, "at", "", "revocation time (default now)")
	revoke.Flags().StringVar(&dir, "dir", "", "keys folder (default: keys_dir of the configuration)")

	imp := &cobra.Command{
		Use:   "import --agency ID [--dir DIR] FILE|-",
		Short: "Install the public JWK Set an agency made with its own tooling into <agency>.jwks.json",
		Long: `Install the public JWK Set an agency made with its own tooling (read from
FILE, or stdin for "-") into <agency>.jwks.json of the keys folder.

The set is refused unless it is at most 64 KiB and holds at least one key,
and every key has a kid "<agency>/<key-id>" of this agency, an "alg" of
EdDSA (Ed25519), ES256 or ECDH-ES+A256KW (P-256) that fits its material, a
"use" (if any) that fits its alg (sig, enc), no private member ("d", "p",
"q", "dp", "dq", "qi", "k", "oth") and a kid no other key has.

Keys are merged: a kid already installed with the same material is left
as is (importing twice changes nothing), a "revoked_at" in the set is
honoured, and a kid already installed with other material refuses the
whole import.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if agency == "" {
				return usagef("--agency is required")
			}
			b, err := readImport(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			pubs, err := keys.ValidateImport(agency, b)
			if err != nil {
				return err
			}
			d, err := keysDir()
			if err != nil {
				return err
			}
			changes, err := keys.ImportPublic(d, agency, pubs)
			if err != nil {
				return err
			}
			changed := map[string]keys.Change{}
			for _, c := range changes {
				changed[c.KID] = c
			}
			for _, p := range pubs {
				c, ok := changed[p.KID()]
				switch {
				case !ok:
					fmt.Fprintf(g.stdout, "unchanged %s\n", p.KID())
				case c.Kind == keys.KeyRevoked:
					fmt.Fprintf(g.stdout, "revoked   %s at %s\n", p.KID(), c.RevokedAt.Format(time.RFC3339))
				default:
					fmt.Fprintf(g.stdout, "added     %s (%s, use %s)%s\n", p.KID(), p.Alg, p.Use(), revokedNote(c.RevokedAt))
				}
			}
			fmt.Fprintf(g.stdout, "  public:  %s\n", keys.JWKSPath(d, agency))
			if len(changes) > 0 {
				pickUp(g.stdout, d)
			}
			return nil
		},
	}
	imp.Flags().StringVar(&agency, "agency", "", "the agency whose keys these are")
	imp.Flags().StringVar(&dir, "dir", "", "keys folder (default: keys_dir of the configuration)")

	cmd.AddCommand(gen, jwks, revoke, imp)
	return cmd
}

// readImport reads the JWKS to import from path, or from stdin for "-",
// reading one byte past keys.MaxImportSize so that ValidateImport sees an
// oversized set as such.
func readImport(stdin io.Reader, path string) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, keys.MaxImportSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func revokedNote(at time.Time) string {
	if at.IsZero() {
		return ""
	}
	return ", revoked at " + at.Format(time.RFC3339)
}

// pickUp says when a running broker sees a change made in the keys folder
// dir.
func pickUp(w io.Writer, dir string) {
	fmt.Fprintf(w, "a running broker picks this up within %v (it polls %s), or at once on SIGHUP\n", keys.DefaultWatchInterval, dir)
}
