package promotlp

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// knownPool are the lines the payloads of FuzzKnownMatchesAdd are made of:
// metadata that changes a family's type, series of every kind, label sets
// written in different ways, labels a filter removes, duplicates.
var knownPool = []string{
	"# TYPE c counter",
	"# TYPE c gauge",
	"# HELP c help",
	"# TYPE g gauge",
	"# TYPE h histogram",
	"# TYPE s summary",
	`c{a="1"}`,
	`c{a="2",b="x"}`,
	`c{a="2", b="x"}`,
	`c{b="x",a="2"}`,
	`c{a="1",drop="1"}`,
	`c{a="1",drop="2"}`,
	`c{a="3",cluster="own"}`,
	`c`,
	`c_created{a="1"}`,
	`g{a="1"}`,
	`g{a="1}"}`,
	`g{a=""}`,
	`g{x="1"}`,
	`u{a="1"}`,
	`u{a="\"q\""}`,
	`h_bucket{a="1",le="1"}`,
	`h_bucket{a="1",le="+Inf"}`,
	`h_count{a="1"}`,
	`h_sum{a="1"}`,
	`s{a="1",quantile="0.5"}`,
	`s_count{a="1"}`,
	`s_sum{a="1"}`,
	`c{a="1"`, // malformed
}

var knownValues = []string{"1", "2", "0", "7.5", "NaN", "+Inf", "-1", "1 1700000000000", "3 1700000015000", "x"}

// FuzzKnownMatchesAdd converts the same payloads twice, scrape after scrape:
// once with every sample filtered and added with its labels (Add), once
// with the parser skipping the labels of lines the converter recognises
// (promtext.Parser.SkipLabels = Known, then AddKnown). Both must give the
// same metrics, stats and errors after every scrape.
func FuzzKnownMatchesAdd(f *testing.F) {
	f.Add([]byte{0, 6, 1, 7, 2, 13, 3, 255, 0, 6, 4, 7, 5, 13, 6, 255, 0, 6, 4, 7, 5, 13, 6})
	f.Add([]byte{4, 21, 1, 22, 2, 23, 3, 24, 4, 255, 4, 21, 5, 22, 6, 23, 7, 24, 8, 255, 4, 22, 1, 21, 2, 23, 3, 24, 4})
	f.Add([]byte{6, 1, 10, 2, 11, 3, 255, 10, 4, 11, 5, 6, 6, 255, 1, 6, 1, 255, 0, 6, 2})
	f.Add([]byte{15, 1, 16, 2, 17, 3, 19, 4, 20, 5, 255, 16, 1, 15, 2, 20, 3, 19, 4, 255, 15, 9, 16, 8, 17, 3})
	f.Add([]byte{6, 1, 6, 2, 7, 3, 255, 6, 1, 6, 2, 7, 3, 28, 1, 255, 6, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		var scrapes []string
		var b strings.Builder
		for i := 0; i < len(data); {
			op := data[i]
			i++
			if op == 255 {
				scrapes = append(scrapes, b.String())
				b.Reset()
				continue
			}
			var v byte
			if i < len(data) {
				v = data[i]
				i++
			}
			line := knownPool[int(op)%len(knownPool)]
			b.WriteString(line)
			if !strings.HasPrefix(line, "#") {
				b.WriteString(" " + knownValues[int(v)%len(knownValues)])
			}
			b.WriteString("\n")
		}
		scrapes = append(scrapes, b.String())
		plain, known := newKnownPipe(false), newKnownPipe(true)
		for i, payload := range scrapes {
			want := plain.scrape(i, payload)
			got := known.scrape(i, payload)
			if got != want {
				t.Fatalf("scrape %d of\n%s\nwith Known:\n%s\nwith Add only:\n%s", i, payload, got, want)
			}
		}
	})
}

// knownPipe is a parser and converter as otel-shoot-scraper runs them, with a
// filter that is a function of the labels alone (it drops series with
// drop="2" and removes the label drop) and an extra label.
type knownPipe struct {
	p     promtext.Parser
	c     *Converter
	known bool
}

func newKnownPipe(known bool) *knownPipe {
	return &knownPipe{c: New(Options{SeriesLimit: 6, TargetLabels: []string{"job"}}), known: known}
}

func (k *knownPipe) scrape(i int, payload string) string {
	k.c.Begin(at(i))
	if k.known {
		k.p.SkipLabels = k.c.Known
	}
	extra := ls("cluster", "c")
	err := k.p.Parse([]byte(payload), promtext.FormatText, func(s *promtext.Sample) error {
		if s.LabelsSkipped {
			k.c.AddKnown(s)
			return nil
		}
		out := s.Labels[:0]
		for _, l := range s.Labels {
			if string(l.Name) == "drop" {
				if string(l.Value) == "2" {
					return nil
				}
				continue
			}
			out = append(out, l)
		}
		s.Labels = out
		x := extra
		for _, l := range s.Labels {
			if string(l.Name) == "cluster" {
				x = nil
			}
		}
		k.c.Add(s, x)
		return nil
	})
	ms, stats := k.c.Finish()
	var b strings.Builder
	fmt.Fprintf(&b, "err=%v stats=%+v\n", err, stats)
	for _, m := range ms {
		raw, merr := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if merr != nil {
			return merr.Error()
		}
		fmt.Fprintf(&b, "%x\n", raw)
	}
	return b.String()
}

// TestKnownSkipsLabels: in steady state every counter and gauge line of a
// payload is recognised; histograms and summaries are not.
func TestKnownSkipsLabels(t *testing.T) {
	payload := "# TYPE c counter\nc{a=\"1\"} 1\nc{a=\"2\"} 2\n# TYPE g gauge\ng 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
	k := newKnownPipe(true)
	skipped := 0
	for i := range 3 {
		k.c.Begin(at(i))
		k.p.SkipLabels = k.c.Known
		skipped = 0
		err := k.p.Parse([]byte(payload), promtext.FormatText, func(s *promtext.Sample) error {
			if s.LabelsSkipped {
				skipped++
				k.c.AddKnown(s)
				return nil
			}
			k.c.Add(s, nil)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, st := k.c.Finish(); st.Series != 4 {
			t.Fatalf("scrape %d: %d series, want 4", i, st.Series)
		}
		if i == 0 && skipped != 0 {
			t.Fatalf("first scrape skipped %d", skipped)
		}
	}
	if skipped != 3 {
		t.Fatalf("steady state skipped the labels of %d samples, want 3", skipped)
	}
	k.c.ForgetKeys()
	k.c.Begin(at(3))
	if err := k.p.Parse([]byte(payload), promtext.FormatText, func(s *promtext.Sample) error {
		if s.LabelsSkipped {
			t.Fatalf("%s skipped after ForgetKeys", s.Key)
		}
		k.c.Add(s, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
