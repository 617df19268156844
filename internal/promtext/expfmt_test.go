package promtext

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// This file compares the parser with the reference parser,
// github.com/prometheus/common/expfmt. expfmt folds histograms and
// summaries into structures, so both sides are flattened into one value per
// series key: the sample name and its sorted labels, with le and quantile
// normalised (expfmt keeps them as floats) and dropped from the _sum and
// _count lines of histograms and summaries (expfmt does too).

// flatSample is one flattened series.
type flatSample struct {
	typ    MetricType
	value  float64
	ts     int64
	hasTS  bool
	withTS bool // the timestamp is comparable (expfmt keeps one per line only for simple types)
}

// flatSet maps series keys to samples; keys seen twice are in dup and are
// not compared, since expfmt merges or drops repeated series.
type flatSet struct {
	m   map[string]flatSample
	dup map[string]bool
}

func newFlatSet() flatSet {
	return flatSet{m: map[string]flatSample{}, dup: map[string]bool{}}
}

func (s flatSet) add(key string, v flatSample) {
	if _, ok := s.m[key]; ok {
		s.dup[key] = true
	}
	s.m[key] = v
}

// seriesKey renders name{l1="v1",...} with labels sorted by name.
func seriesKey(name string, labels []lbl) string {
	ls := slices.Clone(labels)
	slices.SortFunc(ls, func(a, b lbl) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name + "=" + strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// normFloat renders a float label value the way the key expects; ok is
// false when expfmt would not have parsed it.
func normFloat(s string) (string, bool) {
	if strings.ContainsAny(s, "pP_") {
		return "", false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", false
	}
	return strconv.FormatFloat(f, 'g', -1, 64), true
}

// without returns labels without the one named name, and its value.
func without(labels []lbl, name string) ([]lbl, string, bool) {
	var out []lbl
	val, found := "", false
	for _, l := range labels {
		if l.Name == name {
			val, found = l.Value, true
			continue
		}
		out = append(out, l)
	}
	return out, val, found
}

// flattenRecs flattens our samples the way expfmt sees them; samples that
// expfmt drops or cannot represent exactly are left out.
func flattenRecs(recs []rec) flatSet {
	set := newFlatSet()
	for _, r := range recs {
		labels := r.Labels
		fs := flatSample{typ: r.Type, value: r.Value, ts: r.TS, hasTS: r.HasTS}
		special := ""
		switch {
		case r.Suffix == SuffixCreated:
			// expfmt makes x_created an untyped family of its own.
		case r.Type == TypeHistogram || r.Type == TypeGaugeHistogram:
			special = "le"
		case r.Type == TypeSummary:
			special = "quantile"
		default:
			fs.withTS = true
		}
		if special != "" {
			var v string
			var found bool
			labels, v, found = without(labels, special)
			bucketish := r.Suffix == SuffixBucket || (special == "quantile" && r.Suffix == SuffixNone)
			switch {
			case bucketish:
				norm, ok := normFloat(v)
				if !found || !ok {
					continue
				}
				labels = append(labels, lbl{special, norm})
			case r.Suffix == SuffixSum || r.Suffix == SuffixCount:
			default:
				continue // expfmt drops it
			}
			if r.Type == TypeSummary && r.Suffix == SuffixCount {
				// expfmt stores uint64(value).
				if !(r.Value >= 0 && r.Value < 1<<63 && r.Value == math.Trunc(r.Value)) {
					continue
				}
			}
		}
		set.add(seriesKey(r.Name, labels), fs)
	}
	return set
}

var dtoTypes = map[dto.MetricType]MetricType{
	dto.MetricType_COUNTER:         TypeCounter,
	dto.MetricType_GAUGE:           TypeGauge,
	dto.MetricType_UNTYPED:         TypeUnknown,
	dto.MetricType_SUMMARY:         TypeSummary,
	dto.MetricType_HISTOGRAM:       TypeHistogram,
	dto.MetricType_GAUGE_HISTOGRAM: TypeGaugeHistogram,
}

// flattenFamilies flattens expfmt's result.
func flattenFamilies(fams map[string]*dto.MetricFamily) flatSet {
	set := newFlatSet()
	for name, mf := range fams {
		typ := dtoTypes[mf.GetType()]
		for _, m := range mf.GetMetric() {
			var labels []lbl
			for _, lp := range m.GetLabel() {
				labels = append(labels, lbl{lp.GetName(), lp.GetValue()})
			}
			simple := func(v float64) {
				set.add(seriesKey(name, labels), flatSample{typ: typ, value: v, ts: m.GetTimestampMs(), hasTS: m.TimestampMs != nil, withTS: true})
			}
			with := func(n string, extra []lbl, v float64) {
				set.add(seriesKey(n, append(slices.Clone(labels), extra...)), flatSample{typ: typ, value: v})
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				simple(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				simple(m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				simple(m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					with(name, []lbl{{"quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)}}, q.GetValue())
				}
				if s.SampleSum != nil {
					with(name+"_sum", nil, s.GetSampleSum())
				}
				if s.SampleCount != nil {
					with(name+"_count", nil, float64(s.GetSampleCount()))
				}
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					v := float64(b.GetCumulativeCount())
					if b.CumulativeCountFloat != nil {
						v = b.GetCumulativeCountFloat()
					}
					with(name+"_bucket", []lbl{{"le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)}}, v)
				}
				if h.SampleSum != nil {
					with(name+"_sum", nil, h.GetSampleSum())
				}
				switch {
				case h.SampleCountFloat != nil:
					with(name+"_count", nil, h.GetSampleCountFloat())
				case h.SampleCount != nil:
					with(name+"_count", nil, float64(h.GetSampleCount()))
				}
			}
		}
	}
	return set
}

// compareFlat checks that every series key both sides have once, with the
// same family type, has the same value (and timestamp where comparable). It
// returns how many keys it compared.
func compareFlat(t testing.TB, ours, ref flatSet) int {
	t.Helper()
	compared := 0
	for k, o := range ours.m {
		r, ok := ref.m[k]
		if !ok || ours.dup[k] || ref.dup[k] || o.typ != r.typ {
			continue
		}
		compared++
		if !sameFloat(o.value, r.value) && !(o.value == 0 && r.value == 0) {
			t.Errorf("%s: value %v, expfmt %v", k, o.value, r.value)
		}
		if o.withTS && r.withTS && (o.hasTS != r.hasTS || o.ts != r.ts) {
			t.Errorf("%s: timestamp %v/%d, expfmt %v/%d", k, o.hasTS, o.ts, r.hasTS, r.ts)
		}
	}
	return compared
}

// expfmtParse parses the text format with expfmt.
func expfmtParse(data []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(bytes.NewReader(data))
}

// fixtures are the generated payloads the differential tests run on.
func fixtures() map[string][]byte {
	cadvisor, _ := cadvisorPayload(3000)
	node, _ := nodeExporterPayload()
	kubelet, _ := kubeletPayload()
	return map[string][]byte{"cadvisor": cadvisor, "node-exporter": node, "kubelet": kubelet}
}

// TestDifferentialExpfmt parses the fixtures with both parsers and wants the
// same series, values, timestamps, types and HELP texts.
func TestDifferentialExpfmt(t *testing.T) {
	for name, data := range fixtures() {
		t.Run(name, func(t *testing.T) {
			recs, err := parseAll(data, FormatText)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			fams, err := expfmtParse(data)
			if err != nil {
				t.Fatalf("expfmt: %v", err)
			}
			ours, ref := flattenRecs(recs), flattenFamilies(fams)
			if len(ours.dup) > 0 || len(ref.dup) > 0 {
				t.Fatalf("fixture has repeated series: %v %v", ours.dup, ref.dup)
			}
			if len(ours.m) != len(recs) || len(ref.m) != len(recs) {
				t.Fatalf("%d samples, %d comparable series, expfmt %d", len(recs), len(ours.m), len(ref.m))
			}
			if n := compareFlat(t, ours, ref); n != len(recs) {
				t.Fatalf("compared %d of %d series", n, len(recs))
			}
			for _, r := range recs {
				mf := fams[r.Family]
				if mf == nil {
					t.Fatalf("%s: family %q unknown to expfmt", r.Name, r.Family)
				}
				if r.Help != mf.GetHelp() || r.Type != dtoTypes[mf.GetType()] {
					t.Fatalf("%s: help %q type %v, expfmt %q %v", r.Name, r.Help, r.Type, mf.GetHelp(), mf.GetType())
				}
			}
		})
	}
}

// TestDifferentialOpenMetrics re-encodes expfmt's view of the fixtures as
// OpenMetrics with expfmt's encoder and parses that, which checks the
// OpenMetrics path (family names without _total, timestamps in seconds, # EOF)
// against the reference too.
func TestDifferentialOpenMetrics(t *testing.T) {
	for name, data := range fixtures() {
		t.Run(name, func(t *testing.T) {
			fams, err := expfmtParse(data)
			if err != nil {
				t.Fatalf("expfmt: %v", err)
			}
			var om bytes.Buffer
			for _, n := range slices.Sorted(func(yield func(string) bool) {
				for k := range fams {
					if !yield(k) {
						return
					}
				}
			}) {
				if _, err := expfmt.MetricFamilyToOpenMetrics(&om, fams[n]); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := expfmt.FinalizeOpenMetrics(&om); err != nil {
				t.Fatal(err)
			}
			recs, err := parseAll(om.Bytes(), FormatOpenMetrics)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			ours, ref := flattenRecs(recs), flattenFamilies(fams)
			if len(ours.m) != len(ref.m) || len(recs) != len(ref.m) {
				t.Fatalf("%d samples, %d series, expfmt %d", len(recs), len(ours.m), len(ref.m))
			}
			if n := compareFlat(t, ours, ref); n != len(recs) {
				t.Fatalf("compared %d of %d series", n, len(recs))
			}
			for _, r := range recs {
				if r.Type == TypeCounter && strings.HasSuffix(r.Name, "_total") && (r.Suffix != SuffixTotal || r.Family+"_total" != r.Name) {
					t.Fatalf("%s: family %q suffix %v", r.Name, r.Family, r.Suffix)
				}
			}
		})
	}
}
