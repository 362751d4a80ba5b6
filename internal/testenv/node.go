package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var npmInstalls sync.Map // dir → *npmInstall

type npmInstall struct {
	once sync.Once
	out  []byte
	err  error
}

// Node returns the node binary with the npm packages of dir's package.json
// installed into dir/node_modules (once per dir and process), for interop
// tests against another language's implementation. It skips t, or fails it
// under CI=true, when Node.js, npm or the registry is missing; want is a
// package whose presence in node_modules means the install is done.
func Node(t testing.TB, dir, want string) string {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		Require(t, "Node.js", "node not on PATH")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", want)); err == nil {
		return nodeBin
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		Require(t, "npm", "npm not on PATH")
	}
	v, _ := npmInstalls.LoadOrStore(dir, &npmInstall{})
	in := v.(*npmInstall)
	in.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund")
		cmd.Dir = dir
		in.out, in.err = cmd.CombinedOutput()
	})
	if in.err != nil {
		Require(t, "npm registry", "npm install in "+dir+": "+in.err.Error()+": "+string(in.out))
	}
	return nodeBin
}
