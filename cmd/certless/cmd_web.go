package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/certless/certless/webauth"
)

const (
	// devAuditor is the auditor login certless dev creates.
	devAuditor = "auditor"
	// devPasswordFile holds its password, in the data folder (0600).
	devPasswordFile = "web-passwords.txt"
)

// writeDevWebConfig writes <data>/web.yml (Prometheus's web configuration
// format, one bcrypt-hashed auditor) and the password to
// <data>/web-passwords.txt, both readable by the owner only.
func writeDevWebConfig(dataDir string) (string, error) {
	pass := randomPassword()
	hash, err := webauth.HashPassword(pass)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, "web.yml")
	content := "# Prometheus web configuration format (exporter-toolkit): add tls_server_config\n" +
		"# to serve TLS; users are bcrypt hashes ('certless web passwd USER').\n" +
		"basic_auth_users:\n  " + devAuditor + ": " + hash + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("web configuration: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, devPasswordFile), []byte(devAuditor+" "+pass+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("web passwords: %w", err)
	}
	return path, nil
}

func randomPassword() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newWebCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Logins of the HTTP address (Prometheus's web configuration file format)",
		Args:  cobra.NoArgs,
	}
	var generate bool
	passwd := &cobra.Command{
		Use:   "passwd USER [--generate]",
		Short: "Print a basic_auth_users line for USER: the bcrypt hash of a password read from standard input (or generated)",
		Long: `Prints "USER: <bcrypt hash>" for the basic_auth_users map of the web
configuration file (http.web_config_file). The password is the first line
of standard input, or with --generate a random one, printed to standard
error once. Then name USER in http.operators or http.auditors; the broker
re-reads the file within a second of a change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if user == "" || strings.ContainsAny(user, ": \t\n") {
				return usagef("USER %q: no colon, space or line break", user)
			}
			var pass string
			if generate {
				pass = randomPassword()
				fmt.Fprintf(g.stderr, "password of %s: %s\n", user, pass)
			} else {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				pass = strings.TrimRight(line, "\r\n")
				if pass == "" {
					return usagef("no password on standard input (or use --generate): %v", err)
				}
			}
			if len(pass) > 72 {
				return usagef("a bcrypt password is at most 72 bytes")
			}
			hash, err := webauth.HashPassword(pass)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s\n", user, hash)
			return nil
		},
	}
	passwd.Flags().BoolVar(&generate, "generate", false, "generate a random password and print it to standard error")
	cmd.AddCommand(passwd)
	return cmd
}
