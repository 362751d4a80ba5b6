package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is what `certless version` reports.
type buildVersion struct {
	Module    string `json:"module"`
	Version   string `json:"version"`          // module version, "(devel)" for a local build
	Commit    string `json:"commit,omitempty"` // VCS revision, when built from a checkout
	CommitAt  string `json:"commit_time,omitempty"`
	Dirty     bool   `json:"dirty"` // built with uncommitted changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// readBuildVersion reads the running binary's build information.
func readBuildVersion() buildVersion {
	v := buildVersion{Module: "github.com/certless/certless", Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitAt = s.Value
		case "vcs.modified":
			v.Dirty = s.Value == "true"
		}
	}
	return v
}

func newVersionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version [--output json]",
		Short: "Print the build's module version, VCS commit and Go version",
		Args:  cobra.NoArgs,
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		asJSON, err := out.json()
		if err != nil {
			return err
		}
		v := readBuildVersion()
		if asJSON {
			return writeAgencyJSON(g.stdout, v)
		}
		commit := "unknown commit"
		if v.Commit != "" {
			commit = "commit " + v.Commit
			if v.Dirty {
				commit += "+dirty"
			}
		}
		fmt.Fprintf(g.stdout, "certless %s (%s, %s, %s)\n", v.Version, commit, v.GoVersion, v.Platform)
		return nil
	}
	return cmd
}
