package main

import (
	"github.com/spf13/cobra"
)

// outputFormat is the --output flag of the commands that print something a
// script may want to read: "text" (default, for people) or "json".
type outputFormat struct{ v string }

// addOutputFlag registers --output on cmd.
func addOutputFlag(cmd *cobra.Command) *outputFormat {
	o := &outputFormat{v: "text"}
	cmd.Flags().StringVarP(&o.v, "output", "o", "text", "output format: text or json")
	return o
}

// json reports whether JSON was asked for; any value but text or json is a
// usage error (exit 2).
func (o *outputFormat) json() (bool, error) {
	switch o.v {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("--output %q: want text or json", o.v)
}
