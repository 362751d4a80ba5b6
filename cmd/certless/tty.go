package main

import (
	"io"
	"os"

	"golang.org/x/term"
)

// styled reports whether w may carry colour and progress lines (carriage
// returns, bars): only when it is a terminal, NO_COLOR (no-color.org) is
// unset or empty and TERM is not "dumb". Pipes, files and buffers get plain
// lines.
func styled(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// progressTo is where progress lines go: w when styled, else nowhere.
func progressTo(w io.Writer) io.Writer {
	if styled(w) {
		return w
	}
	return io.Discard
}
