package otlpcompress

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Segments: data compressed once and sent later, possibly after other data
// compressed the same way, without being compressed again.
//
// A Gzip segment is a raw DEFLATE stream ended by a sync flush (byte aligned, no
// final block) and compressed on its own (no back-reference before its start).
// Segments are joined into one standard gzip member by GzipHeader, the segments
// in order, and GzipTrailer with the CRC-32 (CombineCRC32) and the total length
// of their uncompressed data: a stream any gzip decoder reads whole, not a
// concatenation of members, which some decoders stop reading after the first.
//
// A Zstd segment is one zstd frame; joined segments are consecutive frames, which
// the zstd format defines as one stream (RFC 8878, section 3.1).

// gzipHeader is a gzip member header: no name, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// finalBlock is an empty stored DEFLATE block with the final bit set.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// AppendGzipHeader appends the header of a gzip member to dst.
func AppendGzipHeader(dst []byte) []byte { return append(dst, gzipHeader...) }

// AppendGzipTrailer ends a gzip member whose DEFLATE data so far are joined Gzip
// segments: a final empty block, the CRC-32 and the length (mod 2^32) of their
// uncompressed data.
func AppendGzipTrailer(dst []byte, crc uint32, size uint64) []byte {
	dst = append(dst, finalBlock...)
	dst = binary.LittleEndian.AppendUint32(dst, crc)
	return binary.LittleEndian.AppendUint32(dst, uint32(size))
}

var flateWriters = sync.Pool{New: func() any {
	fw, _ := flate.NewWriter(nil, flate.BestSpeed)
	return fw
}}

// sliceWriter appends to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// AppendSegment appends the concatenation of parts, compressed as a segment of
// name (Gzip or Zstd), to dst. It returns the CRC-32 (IEEE) of the uncompressed
// data, which joining Gzip segments needs.
func AppendSegment(dst []byte, name string, parts ...[]byte) ([]byte, uint32, error) {
	var crc uint32
	for _, p := range parts {
		crc = crc32.Update(crc, crc32.IEEETable, p)
	}
	switch name {
	case Gzip:
		fw := flateWriters.Get().(*flate.Writer)
		defer flateWriters.Put(fw)
		w := &sliceWriter{b: dst}
		fw.Reset(w)
		for _, p := range parts {
			if _, err := fw.Write(p); err != nil {
				return dst, 0, fmt.Errorf("gzip: %w", err)
			}
		}
		if err := fw.Flush(); err != nil { // sync flush: byte aligned, not final
			return dst, 0, fmt.Errorf("gzip: %w", err)
		}
		fw.Reset(nil)
		return w.b, crc, nil
	case Zstd:
		enc := zstdEncoders.Get().(*zstd.Encoder)
		defer zstdEncoders.Put(enc)
		if len(parts) == 1 {
			return enc.EncodeAll(parts[0], dst), crc, nil
		}
		w := &sliceWriter{b: dst}
		enc.Reset(w)
		for _, p := range parts {
			if _, err := enc.Write(p); err != nil {
				return dst, 0, fmt.Errorf("zstd: %w", err)
			}
		}
		if err := enc.Close(); err != nil {
			return dst, 0, fmt.Errorf("zstd: %w", err)
		}
		enc.Reset(nil)
		return w.b, crc, nil
	}
	return dst, 0, fmt.Errorf("compression %q not supported", name)
}

// CombineCRC32 returns the CRC-32 (IEEE) of a+b from crcA, that of a, crcB, that
// of b, and the length of b.
func CombineCRC32(crcA, crcB uint32, lenB uint64) uint32 {
	return multModP(xPow8n(lenB), crcA) ^ crcB
}

// The CRC-32 polynomial, reflected, and x^(2^k) modulo it (zlib's crc32_combine).
const crcPoly = 0xedb88320

var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// multModP multiplies a and b modulo the CRC polynomial (reflected bit order).
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
}

// xPow8n is x^(8n) modulo the CRC polynomial: the shift of n bytes.
func xPow8n(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	k := 3
	for n != 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}
