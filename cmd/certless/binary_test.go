package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// certlessBinary builds the certless binary once per test process, for the
// tests that run the broker in its own process.
func certlessBinary(ctx context.Context, t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "certless-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "certless")
		built.out, built.err = exec.CommandContext(ctx, "go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.path
}
