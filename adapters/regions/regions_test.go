package regions_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/certless/certless/adapters/regions"
)

func TestTableIsConsistent(t *testing.T) {
	code := regexp.MustCompile(`^22[0-9]{4}$`)
	seen := map[string]bool{}
	prev := ""
	for _, r := range regions.All() {
		if !code.MatchString(r.Code) {
			t.Errorf("%s: not a Jilin GB/T 2260 code", r.Code)
		}
		if seen[r.Code] {
			t.Errorf("%s: duplicate", r.Code)
		}
		seen[r.Code] = true
		if r.Code <= prev {
			t.Errorf("%s: out of order after %s", r.Code, prev)
		}
		prev = r.Code
		if r.Name == "" || r.NameEN == "" {
			t.Errorf("%s: missing name", r.Code)
		}
		switch r.Level {
		case regions.Province:
			if r.Parent != "" || r.Code != regions.Jilin {
				t.Errorf("%s: bad province row", r.Code)
			}
		case regions.Prefecture:
			if r.Parent != regions.Jilin || r.Code[4:] != "00" {
				t.Errorf("%s: bad prefecture row", r.Code)
			}
		case regions.County:
			p, ok := regions.Lookup(r.Parent)
			if !ok || p.Level != regions.Prefecture || p.Code[:4] != r.Code[:4] {
				t.Errorf("%s: bad parent %s", r.Code, r.Parent)
			}
		default:
			t.Errorf("%s: unknown level %q", r.Code, r.Level)
		}
	}
	if n := len(regions.Counties()); n < 60 {
		t.Errorf("only %d counties", n)
	}
	if n := len(regions.Prefectures()); n != 9 {
		t.Errorf("%d prefectures, want 9", n)
	}
}

func TestChain(t *testing.T) {
	got := fmt.Sprint(regions.Chain("222403"))
	if got != "[222403 222400 220000]" {
		t.Errorf("Chain(222403) = %s", got)
	}
	if regions.Chain("110101") != nil {
		t.Error("Chain of a code outside the table must be nil")
	}
	if got := regions.FullName("220582"); got != "吉林省通化市集安市" {
		t.Errorf("FullName = %s", got)
	}
}

func ExampleChain() {
	for _, c := range regions.Chain("220582") {
		r, _ := regions.Lookup(c)
		fmt.Println(r.Code, r.NameEN, r.Level)
	}
	// Output:
	// 220582 Ji'an county
	// 220500 Tonghua prefecture
	// 220000 Jilin province
}
