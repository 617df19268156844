package otlpexport

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, payload := range [][]byte{nil, {0x0a, 0x00}, bytes.Repeat([]byte("OTQR"), 100)} {
		rec := appendRecord([]byte("prefix"), payload, 42, 1234567890)[len("prefix"):]
		h, got, n, err := decodeRecord(append(rec, "trailing"...))
		if err != nil {
			t.Fatalf("decodeRecord: %v", err)
		}
		if n != len(rec) || !bytes.Equal(got, payload) || h.points != 42 || h.enqueued != 1234567890 {
			t.Errorf("decoded n=%d payload=%q header=%+v, want n=%d payload=%q", n, got, h, len(rec), payload)
		}
	}
}

func TestRecordDetectsDamage(t *testing.T) {
	rec := appendRecord(nil, []byte("some payload bytes"), 3, 99)
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x40
		if _, _, _, err := decodeRecord(bad); err == nil {
			t.Errorf("flipping byte %d went unnoticed", i)
		}
	}
	for n := range len(rec) {
		if _, _, _, err := decodeRecord(rec[:n]); !errors.Is(err, errShortRecord) {
			t.Errorf("record cut to %d bytes: err %v, want errShortRecord", n, err)
		}
	}
}

// FuzzRecord checks that decoding arbitrary bytes never panics, that whatever
// decodes re-encodes to the same bytes, and that any single damaged byte of a valid
// record is detected.
func FuzzRecord(f *testing.F) {
	f.Add(appendRecord(nil, []byte("payload"), 1, 2), uint(3), byte(1))
	f.Add(appendRecord(nil, nil, 0, 0), uint(0), byte(0xff))
	f.Add([]byte("OTQR\x00\x00\x00\x00\xff\xff\xff\xff"), uint(5), byte(7))
	f.Add([]byte{}, uint(0), byte(0))
	f.Fuzz(func(t *testing.T, data []byte, pos uint, flip byte) {
		h, payload, n, err := decodeRecord(data)
		if err == nil {
			again := appendRecord(nil, payload, h.points, h.enqueued)
			if !bytes.Equal(again, data[:n]) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, data[:n])
			}
		}
		scanSegment(data) // never panics either
		if _, err := decodeExportResponse(data); err != nil && !errors.Is(err, errBadResponse) {
			t.Fatalf("unexpected response error %v", err)
		}

		rec := appendRecord(nil, data, uint64(len(data)), int64(pos))
		if flip == 0 {
			return
		}
		i := int(pos % uint(len(rec)))
		rec[i] ^= flip
		if _, _, _, err := decodeRecord(rec); err == nil {
			t.Fatalf("damage at byte %d (xor %#x) went unnoticed", i, flip)
		}
	})
}
