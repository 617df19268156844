package otlpexport

import (
	"bytes"
	"testing"
)

func segmentWith(payloads ...string) ([]byte, []int) {
	data := bytes.Clone(segmentHeader)
	var offs []int
	for i, p := range payloads {
		offs = append(offs, len(data))
		data = appendRecord(data, []byte(p), uint64(i+1), int64(i))
	}
	return data, offs
}

func TestScanSegment(t *testing.T) {
	whole, offs := segmentWith("payload-one", "payload-two", "payload-three", "payload-four")
	tests := []struct {
		name       string
		data       []byte
		wantRecs   []int64
		wantDamage []damage
	}{
		{name: "intact", data: whole, wantRecs: []int64{8, int64(offs[1]), int64(offs[2]), int64(offs[3])}},
		{name: "empty file", data: nil},
		{name: "torn header", data: segmentHeader[:3]},
		{
			name: "torn tail", data: whole[:len(whole)-2],
			wantRecs:   []int64{8, int64(offs[1]), int64(offs[2])},
			wantDamage: []damage{{off: int64(offs[3]), points: 4, tail: true}},
		},
		{
			name: "damaged middle record", data: func() []byte {
				d := bytes.Clone(whole)
				d[offs[1]+recordHeaderSize] ^= 1 // payload of the second record
				return d
			}(),
			wantRecs:   []int64{8, int64(offs[2]), int64(offs[3])},
			wantDamage: []damage{{off: int64(offs[1]), points: 2}},
		},
		{
			name: "garbage tail", data: append(bytes.Clone(whole), "garbage that is not a record"...),
			wantRecs:   []int64{8, int64(offs[1]), int64(offs[2]), int64(offs[3])},
			wantDamage: []damage{{off: int64(len(whole)), tail: true}},
		},
		{
			name: "damaged segment header", data: append([]byte("XXXXXXXX"), whole[8:]...),
			wantRecs:   []int64{8, int64(offs[1]), int64(offs[2]), int64(offs[3])},
			wantDamage: []damage{{off: 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, bad := scanSegment(tt.data)
			var offsets []int64
			for _, r := range recs {
				offsets = append(offsets, r.off)
			}
			if !equalSlices(offsets, tt.wantRecs) {
				t.Errorf("records at %v, want %v", offsets, tt.wantRecs)
			}
			if !equalSlices(bad, tt.wantDamage) {
				t.Errorf("damage %+v, want %+v", bad, tt.wantDamage)
			}
		})
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSegmentName(t *testing.T) {
	name := segmentName(12345)
	if name != "00000000000000012345.seg" {
		t.Errorf("segmentName = %q", name)
	}
	if id, ok := parseSegmentName(name); !ok || id != 12345 {
		t.Errorf("parseSegmentName(%q) = %d, %v", name, id, ok)
	}
	for _, bad := range []string{"ack", "lock", "123.seg", "0000000000000001234x.seg", "00000000000000012345.tmp"} {
		if _, ok := parseSegmentName(bad); ok {
			t.Errorf("parseSegmentName(%q) accepted", bad)
		}
	}
}
