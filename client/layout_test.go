package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNothingOfTheBroker: what agencies import (client, envelope,
// keys) depends on no package under broker/, so an agency never compiles
// the broker's server code into its own systems.
func TestImportsNothingOfTheBroker(t *testing.T) {
	for _, pkg := range []string{".", "../envelope", "../keys", "../statuslist"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 5 {
			t.Fatalf("go list -deps %s listed only %v", pkg, deps)
		}
		for _, d := range deps {
			if strings.HasPrefix(d, "github.com/certless/certless/broker") {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}
