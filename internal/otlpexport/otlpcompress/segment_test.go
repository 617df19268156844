package otlpcompress_test

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// TestCombineCRC32 checks the combination against the CRC of the concatenation,
// including empty halves.
func TestCombineCRC32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {3, 1000}, {70000, 12345}, {1 << 20, 3}} {
		a, b := make([]byte, n[0]), make([]byte, n[1])
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		got := otlpcompress.CombineCRC32(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), uint64(len(b)))
		if want := crc32.ChecksumIEEE(append(a, b...)); got != want {
			t.Errorf("lengths %v: combined %08x, want %08x", n, got, want)
		}
	}
}

// joinGzip joins gzip segments of data's pieces into one member as the queue
// does.
func joinGzip(t *testing.T, pieces [][]byte) []byte {
	t.Helper()
	out := otlpcompress.AppendGzipHeader(nil)
	var crc uint32
	var size uint64
	for i, p := range pieces {
		// A part split in two shows that parts are one segment.
		var seg []byte
		var c uint32
		var err error
		if i%2 == 1 && len(p) > 1 {
			seg, c, err = otlpcompress.AppendSegment(nil, otlpcompress.Gzip, p[:len(p)/2], p[len(p)/2:])
		} else {
			seg, c, err = otlpcompress.AppendSegment(nil, otlpcompress.Gzip, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if c != crc32.ChecksumIEEE(p) {
			t.Fatalf("segment CRC %08x, want %08x", c, crc32.ChecksumIEEE(p))
		}
		out = append(out, seg...)
		crc = otlpcompress.CombineCRC32(crc, c, uint64(len(p)))
		size += uint64(len(p))
	}
	return otlpcompress.AppendGzipTrailer(out, crc, size)
}

// TestGzipSegmentsAreOneMember: joined segments are a single gzip member that
// the standard library reads whole with multistream mode off (a decoder that
// stops after the first member loses nothing), and so do klauspost's reader and
// NewReader.
func TestGzipSegmentsAreOneMember(t *testing.T) {
	p := payload()
	for _, cuts := range [][]int{nil, {0}, {1}, {len(p) / 3, len(p) / 2, len(p) - 1}, {100, 100, 40000}} {
		var pieces [][]byte
		last := 0
		for _, c := range cuts {
			pieces = append(pieces, p[last:c])
			last = c
		}
		pieces = append(pieces, p[last:])
		joined := joinGzip(t, pieces)

		zr, err := gzip.NewReader(bytes.NewReader(joined))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("cuts %v: %v", cuts, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("cuts %v: decoded %d bytes, want %d", cuts, len(got), len(p))
		}
		kr, err := kgzip.NewReader(bytes.NewReader(joined))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(kr); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("cuts %v: klauspost: %v, %d bytes", cuts, err, len(got))
		}
		r, release, err := otlpcompress.NewReader(otlpcompress.Gzip, bytes.NewReader(joined))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("cuts %v: NewReader: %v, %d bytes", cuts, err, len(got))
		}
		release()
		if len(joined) > len(p)/2 {
			t.Errorf("cuts %v: %d compressed bytes of %d", cuts, len(joined), len(p))
		}
	}
}

// TestGzipSegmentDamage: a damaged segment fails the CRC or the DEFLATE
// decoding, never decodes to other data silently.
func TestGzipSegmentDamage(t *testing.T) {
	p := payload()
	joined := joinGzip(t, [][]byte{p[:50000], p[50000:]})
	for _, at := range []int{12, len(joined) / 2, len(joined) - 9, len(joined) - 3} {
		bad := bytes.Clone(joined)
		bad[at] ^= 0x40
		zr, err := gzip.NewReader(bytes.NewReader(bad))
		if err != nil {
			continue
		}
		if got, err := io.ReadAll(zr); err == nil && !bytes.Equal(got, p) {
			t.Errorf("byte %d flipped: decoded other data without an error", at)
		}
	}
}

// TestZstdSegmentsAreOneStream: consecutive frames decode as one stream.
func TestZstdSegmentsAreOneStream(t *testing.T) {
	p := payload()
	var joined []byte
	for _, piece := range [][]byte{p[:1000], p[1000:1000], p[1000:]} {
		var err error
		if joined, _, err = otlpcompress.AppendSegment(joined, otlpcompress.Zstd, piece[:len(piece)/2], piece[len(piece)/2:]); err != nil {
			t.Fatal(err)
		}
	}
	r, release, err := otlpcompress.NewReader(otlpcompress.Zstd, bytes.NewReader(joined))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("%v, %d bytes, want %d", err, len(got), len(p))
	}
}
