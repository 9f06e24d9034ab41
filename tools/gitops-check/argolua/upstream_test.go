package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const original = `package p

type T struct{ n int }

// m does things.
func (t *T) m(a int) int {
	if a > 1 {
		return a + t.n
	}
	return 0
}

const limit = 3
`

// The same code, reformatted and commented differently.
const relaid = `package p

type T struct {
	n int
}

func (t *T) m(a int) int { // the comment moved
	if a > 1 { return a + t.n }

	// a new comment
	return 0
}

const (
	limit = 3 // a group now
)
`

// One operator changed.
const changed = `package p

type T struct{ n int }

func (t *T) m(a int) int {
	if a >= 1 {
		return a + t.n
	}
	return 0
}

const limit = 3
`

func mustFingerprint(t *testing.T, src, decl string) string {
	t.Helper()
	sum, err := declFingerprint([]byte(src), decl)
	if err != nil {
		t.Fatalf("%s: %v", decl, err)
	}
	return sum
}

func TestFingerprintIgnoresLayoutAndComments(t *testing.T) {
	for _, decl := range []string{"func T.m", "type T", "const limit"} {
		if a, b := mustFingerprint(t, original, decl), mustFingerprint(t, relaid, decl); a != b {
			t.Errorf("%s: %s after reformatting, was %s", decl, b, a)
		}
	}
}

func TestFingerprintSeesACodeChange(t *testing.T) {
	if a, b := mustFingerprint(t, original, "func T.m"), mustFingerprint(t, changed, "func T.m"); a == b {
		t.Errorf("func T.m: the same fingerprint after a change of an operator")
	}
	if _, err := declFingerprint([]byte(original), "func m"); !errors.Is(err, errNoDecl) {
		t.Errorf("a method found as a function: %v", err)
	}
}

// zipSum gives the sum go.sum records for a module zip in the module cache.
func TestZipSumIsTheGoCommandsSum(t *testing.T) {
	goSum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	const module, version = "github.com/yuin/gopher-lua", "v1.1.2"
	zipPath := filepath.Join(strings.TrimSpace(string(out)), "cache/download", module, "@v", version+".zip")
	got, err := zipSum(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := module + " " + version + " " + got + "\n"; !strings.Contains(string(goSum), want) {
		t.Errorf("%s: %s, not the sum in go.sum", zipPath, got)
	}
}

func TestGoModVersions(t *testing.T) {
	goMod := `module x

go 1.27.0

require a.example/single v1.0.0

require (
	b.example/block v2.0.0 // indirect
	c.example/other v3.0.0
)

replace b.example/block => ./local
`
	required, replaced := goModVersions([]byte(goMod), []string{"a.example/single", "b.example/block"})
	if required["a.example/single"] != "v1.0.0" || required["b.example/block"] != "v2.0.0" || len(required) != 2 {
		t.Errorf("required: %v", required)
	}
	if replaced["b.example/block"] != "=> ./local" || len(replaced) != 1 {
		t.Errorf("replaced: %v", replaced)
	}
}
