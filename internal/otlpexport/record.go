package otlpexport

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Record layout: see the package documentation.
const (
	recordHeaderSize = 28
	// maxPayload bounds a record payload so that a damaged length field cannot make
	// a reader allocate or skip gigabytes.
	maxPayload = 256 << 20
)

// Record magics, one per payload encoding: "OTQR" a marshalled request as is,
// "OTQG" and "OTQZ" one compressed segment of it (see encoding).
var (
	recordMagic     = [4]byte{'O', 'T', 'Q', 'R'}
	recordMagicGzip = [4]byte{'O', 'T', 'Q', 'G'}
	recordMagicZstd = [4]byte{'O', 'T', 'Q', 'Z'}
)

// encoding is how a record's payload holds its marshalled request.
type encoding uint8

const (
	// encIdentity: the payload is the marshalled request.
	encIdentity encoding = iota
	// encGzip: a gzip segment of it (otlpcompress.AppendSegment) followed by the
	// segment trailer.
	encGzip
	// encZstd: a zstd frame of it followed by the segment trailer.
	encZstd
)

// segmentTrailerSize is the trailer of a compressed payload: the CRC-32 (IEEE) and
// the length of the uncompressed request, uint32 little endian each.
const segmentTrailerSize = 8

func (e encoding) magic() [4]byte {
	switch e {
	case encGzip:
		return recordMagicGzip
	case encZstd:
		return recordMagicZstd
	}
	return recordMagic
}

// encodingOfMagic returns the encoding of a record magic.
func encodingOfMagic(m [4]byte) (encoding, bool) {
	switch m {
	case recordMagic:
		return encIdentity, true
	case recordMagicGzip:
		return encGzip, true
	case recordMagicZstd:
		return encZstd, true
	}
	return 0, false
}

// compressionEncoding is the record encoding of a Config.Compression.
func compressionEncoding(name string) encoding {
	switch name {
	case CompressionGzip:
		return encGzip
	case CompressionZstd:
		return encZstd
	}
	return encIdentity
}

// rawSize is the length of the marshalled request a checked payload of encoding
// enc holds.
func rawSize(enc encoding, payload []byte) int {
	if enc == encIdentity || len(payload) < segmentTrailerSize {
		return len(payload)
	}
	return int(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of decodeRecord.
var (
	// errShortRecord means the bytes end inside the record: a torn write.
	errShortRecord = errors.New("record truncated")
	errBadMagic    = errors.New("record magic mismatch")
	errBadLength   = errors.New("record length out of range")
	errBadChecksum = errors.New("record checksum mismatch")
)

// recordHeader is the decoded fixed part of a record.
type recordHeader struct {
	enc      encoding
	length   uint32
	points   uint64
	enqueued int64 // Unix nanoseconds
}

// appendRecord appends a record holding payload to dst.
func appendRecord(dst, payload []byte, points uint64, enqueued int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeaderSize)...)
	dst = append(dst, payload...)
	sealRecord(dst[start:], points, enqueued)
	return dst
}

// sealRecord fills the header of rec, whose payload is already in place after the
// first recordHeaderSize bytes.
func sealRecord(rec []byte, points uint64, enqueued int64) {
	copy(rec[0:4], recordMagic[:])
	binary.LittleEndian.PutUint32(rec[8:12], uint32(len(rec)-recordHeaderSize))
	binary.LittleEndian.PutUint64(rec[12:20], points)
	binary.LittleEndian.PutUint64(rec[20:28], uint64(enqueued))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], castagnoli))
}

// record is one queue record as a list of parts: the concatenation of the parts
// is the record (header and payload).
type record [][]byte

// sealParts fills hdr, the header of a record of encoding enc whose payload is the
// concatenation of parts, and returns the record.
func sealParts(hdr *[recordHeaderSize]byte, enc encoding, parts [][]byte, points uint64, enqueued int64) record {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	m := enc.magic()
	copy(hdr[0:4], m[:])
	binary.LittleEndian.PutUint32(hdr[8:12], uint32(n))
	binary.LittleEndian.PutUint64(hdr[12:20], points)
	binary.LittleEndian.PutUint64(hdr[20:28], uint64(enqueued))
	crc := crc32.Checksum(hdr[8:], castagnoli)
	for _, p := range parts {
		crc = crc32.Update(crc, castagnoli, p)
	}
	binary.LittleEndian.PutUint32(hdr[4:8], crc)
	return append(record{hdr[:]}, parts...)
}

// parseHeader decodes and range-checks the header at the start of b without looking
// at the payload.
func parseHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderSize {
		return recordHeader{}, errShortRecord
	}
	enc, ok := encodingOfMagic([4]byte(b[0:4]))
	if !ok {
		return recordHeader{}, errBadMagic
	}
	h := recordHeader{
		enc:      enc,
		length:   binary.LittleEndian.Uint32(b[8:12]),
		points:   binary.LittleEndian.Uint64(b[12:20]),
		enqueued: int64(binary.LittleEndian.Uint64(b[20:28])),
	}
	if h.length > maxPayload || (enc != encIdentity && h.length < segmentTrailerSize) {
		return h, errBadLength
	}
	return h, nil
}

// checkRecord verifies the checksum of a record whose header and payload are given
// separately (the payload is read straight into the send buffer).
func checkRecord(header, payload []byte) error {
	want := binary.LittleEndian.Uint32(header[4:8])
	got := crc32.Update(crc32.Checksum(header[8:recordHeaderSize], castagnoli), castagnoli, payload)
	if got != want {
		return errBadChecksum
	}
	return nil
}

// decodeRecord decodes the record at the start of b. It returns the header, the
// payload (aliasing b) and the record's total size. It never panics and never
// allocates, whatever b holds.
func decodeRecord(b []byte) (recordHeader, []byte, int, error) {
	h, err := parseHeader(b)
	if err != nil {
		return h, nil, 0, err
	}
	n := recordHeaderSize + int(h.length)
	if len(b) < n {
		return h, nil, 0, errShortRecord
	}
	payload := b[recordHeaderSize:n]
	if err := checkRecord(b[:recordHeaderSize], payload); err != nil {
		return h, nil, 0, err
	}
	return h, payload, n, nil
}

// plausiblePoints is the data point count of a damaged record's header when it can be
// believed: every data point takes at least two payload bytes.
func plausiblePoints(h recordHeader) uint64 {
	if h.length <= maxPayload && h.points <= uint64(h.length)/2 {
		return h.points
	}
	return 0
}
