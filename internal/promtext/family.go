package promtext

import "bytes"

// classify fills in s's family fields from its name and the current family:
// the sample belongs to the current family when its name is the family name
// or the family name plus a suffix the family's type allows; otherwise it is
// its own family of unknown type.
func (p *Parser) classify(s *Sample) {
	if f := p.fam; len(f) > 0 && len(s.Name) >= len(f) && bytes.Equal(s.Name[:len(f)], f) {
		if suffix, ok := familySuffix(p.famType, s.Name[len(f):], p.om); ok {
			s.Family, s.Type, s.Suffix, s.Help, s.Unit = f, p.famType, suffix, p.help, p.unit
			return
		}
	}
	s.Family, s.Type, s.Suffix, s.Help, s.Unit = s.Name, TypeUnknown, SuffixNone, nil, nil
}

// familySuffix reports whether rest (what follows the family name in a
// sample name) is a suffix that a family of type t allows (see Suffix), and
// which. The empty suffix is allowed for every type.
func familySuffix(t MetricType, rest []byte, om bool) (Suffix, bool) {
	if len(rest) == 0 {
		return SuffixNone, true
	}
	s := SuffixNone
	switch string(rest) {
	case "_total":
		if t == TypeCounter && om {
			s = SuffixTotal
		}
	case "_created":
		if t == TypeCounter || t == TypeHistogram || t == TypeSummary {
			s = SuffixCreated
		}
	case "_bucket":
		if t == TypeHistogram || t == TypeGaugeHistogram {
			s = SuffixBucket
		}
	case "_sum":
		if t == TypeHistogram || t == TypeSummary {
			s = SuffixSum
		}
	case "_count":
		if t == TypeHistogram || t == TypeSummary {
			s = SuffixCount
		}
	case "_gcount":
		if t == TypeGaugeHistogram {
			s = SuffixGCount
		}
	case "_gsum":
		if t == TypeGaugeHistogram {
			s = SuffixGSum
		}
	case "_info":
		if t == TypeInfo {
			s = SuffixInfo
		}
	}
	return s, s != SuffixNone
}
