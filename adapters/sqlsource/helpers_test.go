package sqlsource_test

import (
	"os"
	"sync"
	"testing"
)

var (
	tempMu   sync.Mutex
	tempDirs []string
)

// tempDir is a directory for files shared by several tests of this binary;
// TestMain removes it.
func tempDir() (string, error) {
	d, err := os.MkdirTemp("", "certless-sqlsource-")
	if err == nil {
		tempMu.Lock()
		tempDirs = append(tempDirs, d)
		tempMu.Unlock()
	}
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
