package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/certless/certless/schemas"
)

func newSchemasCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "The JSON Schemas of every message, as agencies validate against them",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "export DIR",
		Short: "Write every embedded schema to DIR as <name>.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := schemas.Default()
			if err != nil {
				return err
			}
			if err := s.Export(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %d schemas to %s\n", len(s.Names()), args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the embedded schemas",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := schemas.Default()
			if err != nil {
				return err
			}
			for _, n := range s.Names() {
				fmt.Fprintln(g.stdout, n)
			}
			return nil
		},
	})
	return cmd
}
