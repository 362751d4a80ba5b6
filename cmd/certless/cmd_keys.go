package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/certless/certless/keys"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate, publish and revoke agency and broker keys",
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
			return nil
		},
	}
	gen.Flags().StringVar(&agency, "agency", "", "agency id (or the broker id for the broker's own key)")
	gen.Flags().StringVar(&keyID, "key-id", "", "key id (default: dated and random, so newer keys sort last)")
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
		Use:   "revoke --kid AGENCY/KEY [--at RFC3339] [--dir DIR]",
		Short: "Revoke a key: it verifies nothing issued after the revocation time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kid == "" {
				return usagef("--kid is required")
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
			return nil
		},
	}
	revoke.Flags().StringVar(&kid, "kid", "", "the key to revoke, as <agency>/<key-id>")
	revoke.Flags().StringVar(&at, "at", "", "revocation time (default now)")
	revoke.Flags().StringVar(&dir, "dir", "", "keys folder (default: keys_dir of the configuration)")

	cmd.AddCommand(gen, jwks, revoke)
	return cmd
}
