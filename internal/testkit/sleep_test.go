package testkit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sleepMarker must open a comment on the line of a time.Sleep in test code, or
// on the line above it, followed by why the sleep is not a synchronisation (the
// thing under test, pacing generated traffic).
const sleepMarker = "sleep-ok:"

// TestNoSleepInTests fails on a time.Sleep in any _test.go file of this module
// (nested modules such as tools/... are their own), and in this package, unless
// a sleep-ok comment says why it is not there to synchronise. Waiting for
// something is Eventually or Poll: a sleep long enough on a quiet machine is
// too short on a loaded one.
func TestNoSleepInTests(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..")) // this package is internal/testkit
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no module root at %s: %v", root, err)
	}
	var found []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "vendor", "testdata", "node_modules":
				return filepath.SkipDir
			}
			// Another module (tools/...) cannot import testkit.
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") && filepath.Dir(path) != filepath.Join(root, "internal", "testkit") {
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		bad, err := unjustifiedSleeps(rel, src)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
		}
		found = append(found, bad...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d test files below %s: wrong root?", files, root)
	}
	if len(found) > 0 {
		t.Errorf("time.Sleep in tests: wait with testkit.Eventually/Poll (a deadline, not a guess), or, where the sleep is the thing under test, say so in a %q comment on its line:\n  %s",
			"// "+sleepMarker+" <why>", strings.Join(found, "\n  "))
	}
}

// unjustifiedSleeps returns file:line of every call of time.Sleep (under
// whatever name the file imports "time") without a sleep-ok comment on its line
// or the line above.
func unjustifiedSleeps(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	timeName := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	if timeName == "" || timeName == "_" {
		return nil, nil
	}
	justified := map[int]bool{}
	for _, g := range f.Comments {
		for _, c := range g.List {
			text := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(c.Text, "//"), "/*"))
			if reason, ok := strings.CutPrefix(text, sleepMarker); ok && strings.TrimSpace(strings.TrimSuffix(reason, "*/")) != "" {
				justified[fset.Position(c.Pos()).Line] = true
			}
		}
	}
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Sleep" {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != timeName {
			return true
		}
		line := fset.Position(call.Pos()).Line
		if !justified[line] && !justified[line-1] {
			bad = append(bad, name+":"+strconv.Itoa(line))
		}
		return true
	})
	return bad, nil
}

func TestUnjustifiedSleeps(t *testing.T) {
	src := `package p

import clock "time"

func f() {
	clock.Sleep(1) // a comment that says nothing
	clock.Sleep(2) // sleep-ok: the downtime being tested
	// sleep-ok: pacing the sender
	clock.Sleep(3)
	// sleep-ok:
	clock.Sleep(4)
	go func() { clock.Sleep(5) }()
	_ = clock.Second // not a call
}
`
	got, err := unjustifiedSleeps("p_test.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p_test.go:6", "p_test.go:11", "p_test.go:12"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A file that does not import time has no time.Sleep, whatever it calls.
	got, err = unjustifiedSleeps("q_test.go", []byte("package q\n\nfunc f() { time.Sleep(1) }\n"))
	if err != nil || len(got) != 0 {
		t.Fatalf("without the import: %v, %v", got, err)
	}
	if _, err := unjustifiedSleeps("r_test.go", []byte("package r\nfunc (")); err == nil {
		t.Fatal("no error for a file that does not parse")
	}
}
