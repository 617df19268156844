// Package style holds tests over the source tree for conventions every daemon
// shares (STYLE.md, docs/daemon-runtime.md) that the compiler does not check.
package style

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// logMethods are slog's level methods; the message is the argument at the index.
var logMethods = map[string]int{
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
}

// loggerExpr is what a *slog.Logger is called in this tree (log, logger,
// d.Logger, c.log, s.opts.Log) or the slog package itself.
var loggerExpr = regexp.MustCompile(`(^|\.)(slog|log|logger|Logger|Log)$`)

// key is a lowerCamelCase attribute key.
var key = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// TestLogCalls: every slog call under cmd/ and internal/ (tests included) has a
// static message that starts lower-case (an acronym such as OTLP may stay upper
// case), lowerCamelCase keys, and its error under the key "err".
func TestLogCalls(t *testing.T) {
	fset := token.NewFileSet()
	calls := 0
	for _, root := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				at, ok := logMethods[sel.Sel.Name]
				if !ok || !loggerExpr.MatchString(exprString(sel.X)) || len(call.Args) <= at {
					return true
				}
				calls++
				pos := fset.Position(call.Pos())
				where := strings.TrimPrefix(pos.String(), "../../")
				for _, problem := range checkLogCall(call.Args[at], call.Args[at+1:]) {
					t.Errorf("%s: %s", where, problem)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls < 100 {
		t.Fatalf("found only %d log calls: the scan is broken", calls)
	}
}

func checkLogCall(msg ast.Expr, args []ast.Expr) []string {
	var problems []string
	lit, ok := msg.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		problems = append(problems, "message is not a string literal: "+exprString(msg))
	} else if s, _ := strconv.Unquote(lit.Value); !lowerStart(s) {
		problems = append(problems, "message starts upper-case: "+lit.Value)
	}
	for i := 0; i < len(args); i++ {
		k, ok := args[i].(*ast.BasicLit)
		if !ok || k.Kind != token.STRING {
			continue // a slog.Attr, or a ...args spread
		}
		name, _ := strconv.Unquote(k.Value)
		if i+1 >= len(args) {
			problems = append(problems, "key "+k.Value+" has no value")
			break
		}
		v := exprString(args[i+1])
		i++
		if name == "err" {
			continue
		}
		if !key.MatchString(name) {
			problems = append(problems, "key "+k.Value+" is not lowerCamelCase")
		}
		if name == "error" || isErrorValue(v) {
			problems = append(problems, "error under key "+k.Value+", want \"err\"")
		}
	}
	return problems
}

// lowerStart: the first word is lower-case, or an all upper-case acronym.
func lowerStart(s string) bool {
	first, _, _ := strings.Cut(s, " ")
	if first == "" {
		return false
	}
	r := []rune(first)
	if unicode.IsLower(r[0]) || !unicode.IsLetter(r[0]) {
		return true
	}
	return len(r) > 1 && strings.ToUpper(first) == first
}

// isErrorValue: an expression that is evidently an error (err, ctx.Err(), cerr).
func isErrorValue(v string) bool {
	return v == "err" || strings.HasSuffix(v, "Err") || strings.HasSuffix(v, "Err()") || strings.HasSuffix(v, "err") && !strings.Contains(v, "(")
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return exprString(e.Fun) + "()"
	case *ast.BasicLit:
		return e.Value
	case *ast.IndexExpr:
		return exprString(e.X) + "[]"
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.ParenExpr:
		return exprString(e.X)
	}
	return "?"
}

func TestLowerStart(t *testing.T) {
	for s, want := range map[string]bool{"export failed": true, "OTLP export failed": true, "Export failed": false, "": false, "1 thing": true, "A": false} {
		if lowerStart(s) != want {
			t.Errorf("lowerStart(%q) = %v", s, !want)
		}
	}
}
