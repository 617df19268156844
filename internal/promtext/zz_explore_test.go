package promtext

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var quoted = regexp.MustCompile(`"(\\.|[^"\\])*"|'[^']*'|\d+`)

func category(msg string) string { return quoted.ReplaceAllString(msg, "Q") }

func genInput(r *rand.Rand) string {
	pieces := []string{"foo", "foo_bucket", "foo_sum", "foo_count", "foo_total", "bar", "{", "}", "a=\"1\"", "le=\"0.5\"", "quantile=\"0.9\"", ",", " ", "\t", "  ", "1", "-1.5", "NaN", "+Inf", "1e3", "0x1p3", "123", "\n", "# TYPE foo histogram\n", "# TYPE foo summary\n", "# TYPE foo counter\n", "# HELP foo h\\n\n", "# TYPE bar gauge\n", "#", "=", "\"", "\\", "\\\"", "\\n", "b=\"x\"", "a=\"2\"", "\r", "__name__=\"x\"", "{\"q.x\"}", "# HELP foo dup\n", "foo 1\n", "bar{a=\"1\"} 2 3\n"}
	var b strings.Builder
	n := 1 + r.IntN(20)
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	if r.IntN(2) == 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func TestExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	var inputs []string
	dir := filepath.Join(os.Getenv("HOME"), ".cache/go-build/fuzz/github.com/trellis-garden/trellis/internal/promtext/FuzzParse")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 3 || !strings.HasSuffix(lines[2], "bool(false)\n") && !strings.HasPrefix(lines[2], "bool(false)") {
			continue
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err == nil {
			inputs = append(inputs, s)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 300000 {
		inputs = append(inputs, genInput(r))
	}
	weRej := map[string][]string{}
	theyRej := map[string][]string{}
	both := 0
	for _, in := range inputs {
		_, err := parseAll([]byte(in), FormatText)
		_, ferr := expfmtParseSafe([]byte(in))
		switch {
		case err != nil && ferr == nil:
			c := category(err.(*ParseError).Msg)
			weRej[c] = append(weRej[c], in)
		case err == nil && ferr != nil:
			c := category(ferr.Error())
			theyRej[c] = append(theyRej[c], in)
		case err == nil && ferr == nil:
			both++
		}
	}
	dump := func(title string, m map[string][]string) {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool { return len(m[ks[i]]) > len(m[ks[j]]) })
		fmt.Println("==", title)
		for _, k := range ks {
			ex := m[k]
			sort.Slice(ex, func(i, j int) bool { return len(ex[i]) < len(ex[j]) })
			fmt.Printf("%6d %s\n       e.g. %q\n", len(m[k]), k, ex[0])
		}
	}
	fmt.Println("both accept:", both, "of", len(inputs))
	dump("we reject, expfmt accepts", weRej)
	dump("we accept, expfmt rejects", theyRej)
}
