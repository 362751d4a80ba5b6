package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certless/certless/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// globals are the flags every subcommand shares.
type globals struct {
	configPath string
	dataDir    string
	stdout     io.Writer
	stderr     io.Writer
	// launched is when the command started (serve's start-up timeout
	// counts from then).
	launched time.Time
}

// loadConfig loads the configuration the flags and environment name.
func (g *globals) loadConfig(getenv config.Getenv) (*config.Config, error) {
	env := getenv
	if g.dataDir != "" {
		env = func(k string) string {
			if k == config.EnvData {
				return g.dataDir
			}
			return getenv(k)
		}
	}
	return config.Load(g.configPath, env)
}

// resolveDataDir is the data folder: --data, else $CERTLESS_DATA, else
// ./.certless.
func (g *globals) resolveDataDir(getenv config.Getenv) string {
	if g.dataDir != "" {
		return g.dataDir
	}
	if d := getenv(config.EnvData); d != "" {
		return d
	}
	return config.DefaultDataDir
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, launched: time.Now()}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "certless:", err)
	var ee exitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(stderr, "Run 'certless --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognises cobra's own argument errors, which it does not type.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "required flag", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "certless",
		Short: "Certless: verified answers between agencies instead of paper certificates",
		Long: `Certless lets an agency (court, school, notary...) ask the police records
directly under a co-signed agreement, and get back a signed, minimal receipt
that anyone can verify offline: information travels instead of people.

Commands without --config use the data folder (--data, $CERTLESS_DATA,
default ./.certless), where 'dev' and 'demo' keep their keys, stores and
generated config.yaml.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "configuration file (default: $CERTLESS_CONFIG, else <data>/config.yaml, else built-in defaults)")
	root.PersistentFlags().StringVar(&g.dataDir, "data", "", "data folder (default: $CERTLESS_DATA, else ./.certless)")
	root.AddCommand(
		newDevCmd(g),
		newServeCmd(g),
		newDemoCmd(g),
		newBenchCmd(g),
		newRequestCmd(g),
		newKeysCmd(g),
		newAgreementCmd(g),
		newAgencyCmd(g),
		newDisputeCmd(g),
		newExchangeCmd(g),
		newRecordsCmd(g),
		newStoreCmd(g),
		newReceiptCmd(g),
		newDeadLetterCmd(g),
		newLogCmd(g),
		newAuditCmd(g),
		newReportCmd(g),
		newWebCmd(g),
		newSchemasCmd(g),
		newVersionCmd(g),
		newDoctorCmd(g),
	)
	return root
}
