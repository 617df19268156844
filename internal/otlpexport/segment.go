package otlpexport

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// segmentHeader starts every segment file: a magic and the format version.
var segmentHeader = []byte("TOTQSEG1")

const segmentSuffix = ".seg"

// segmentName is the file name of segment id; names sort like ids.
func segmentName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentSuffix) }

// parseSegmentName returns the id of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	return id, err == nil
}

// scannedRecord is a valid record found in a segment.
type scannedRecord struct {
	off     int64
	size    int64
	header  recordHeader
	rawSize int // of the marshalled request the payload holds
}

// damage is a stretch of a segment that holds no valid record.
type damage struct {
	off    int64
	points uint64 // from the first damaged record's header when plausible
	tail   bool   // no valid record follows
}

// scanSegment finds the valid records of a segment file's contents and the damaged
// stretches between them. After damage it resumes at the next record magic that
// starts a valid record. It never panics, whatever data holds.
func scanSegment(data []byte) ([]scannedRecord, []damage) {
	var recs []scannedRecord
	var bad []damage
	if len(data) < len(segmentHeader) && bytes.HasPrefix(segmentHeader, data) {
		return nil, nil // created, but the process died before the header was written
	}
	off := len(segmentHeader)
	if !bytes.HasPrefix(data, segmentHeader) {
		off = resync(data, 0)
		bad = append(bad, damage{off: 0, tail: off < 0})
	}
	for off >= 0 && off < len(data) {
		h, payload, n, err := decodeRecord(data[off:])
		if err == nil {
			recs = append(recs, scannedRecord{off: int64(off), size: int64(n), header: h, rawSize: rawSize(h.enc, payload)})
			off += n
			continue
		}
		d := damage{off: int64(off)}
		if err != errBadMagic {
			d.points = plausiblePoints(h)
		}
		off = resync(data, off+1)
		d.tail = off < 0
		bad = append(bad, d)
	}
	return recs, bad
}

// resync returns the offset of the first valid record at or after from, -1 if none.
func resync(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], recordMagic[:3]) // "OTQ": every encoding
		if i < 0 {
			return -1
		}
		if _, _, _, err := decodeRecord(data[from+i:]); err == nil {
			return from + i
		}
		from += i + 1
	}
	return -1
}
