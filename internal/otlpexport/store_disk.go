package otlpexport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

const (
	ackFileName  = "ack"
	lockFileName = "lock"
	ackFileSize  = 20
)

// position is a place in the queue: segment id and byte offset.
type position struct {
	seg uint64
	off int64
}

func (p position) before(q position) bool {
	return p.seg < q.seg || (p.seg == q.seg && p.off < q.off)
}

// segment is one open segment file.
type segment struct {
	id   uint64
	f    *os.File
	size int64
}

// diskStore keeps records in append-only segment files (see the package
// documentation for the format).
type diskStore struct {
	dir       string
	segTarget int64 // a new segment is started when the active one would grow beyond it
	lock      *os.File
	ack       *os.File
	segs      []*segment // oldest first
	active    *segment   // segment being written, the last of segs; nil until the first append
	nextID    uint64
	log       *slog.Logger
	wbuf      []byte // coalesces the small parts of records written by append
}

// Parts of a record at least this large are written straight from the caller's
// memory; smaller ones are gathered into writes of up to wbufSize bytes.
const (
	directWriteMin = 64 << 10
	wbufSize       = 256 << 10
)

// recovery reports what opening a disk queue found.
type recovery struct {
	segments       int
	corruptRecords int
	corruptPoints  uint64
}

// openDiskStore opens or creates the queue in dir and returns its unconsumed records
// in order.
func openDiskStore(dir string, segTarget int64, log *slog.Logger) (*diskStore, []entry, recovery, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, recovery{}, fmt.Errorf("creating queue directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, recovery{}, fmt.Errorf("opening queue lock: %w", err)
	}
	if err := lockFile(lock); err != nil {
		_ = lock.Close()
		return nil, nil, recovery{}, fmt.Errorf("queue directory %s is in use by another exporter: %w", dir, err)
	}
	s := &diskStore{dir: dir, segTarget: segTarget, lock: lock, log: log}
	ents, rec, err := s.recover()
	if err != nil {
		_ = s.close()
		return nil, nil, recovery{}, err
	}
	return s, ents, rec, nil
}

// recover reads the ack position and all segments.
func (s *diskStore) recover() ([]entry, recovery, error) {
	var err error
	s.ack, err = os.OpenFile(filepath.Join(s.dir, ackFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, recovery{}, fmt.Errorf("opening queue ack file: %w", err)
	}
	ack, err := s.readAck()
	if err != nil {
		return nil, recovery{}, err
	}
	ids, err := s.segmentIDs()
	if err != nil {
		return nil, recovery{}, err
	}
	s.nextID = ack.seg + 1
	var ents []entry
	var rec recovery
	for _, id := range ids {
		s.nextID = max(s.nextID, id+1)
		segEnts, seg, err := s.recoverSegment(id, ack, &rec)
		if err != nil {
			return nil, recovery{}, err
		}
		if seg != nil {
			s.segs = append(s.segs, seg)
			ents = append(ents, segEnts...)
		}
	}
	rec.segments = len(s.segs)
	return ents, rec, nil
}

// segmentIDs lists the segment files of the directory in order.
func (s *diskStore) segmentIDs() ([]uint64, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing queue directory: %w", err)
	}
	var ids []uint64
	for _, de := range des {
		if id, ok := parseSegmentName(de.Name()); ok && de.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// recoverSegment scans one segment. Segments without unconsumed records are
// deleted; a damaged tail is cut off so that it is not counted again next time.
func (s *diskStore) recoverSegment(id uint64, ack position, rec *recovery) ([]entry, *segment, error) {
	path := filepath.Join(s.dir, segmentName(id))
	if id < ack.seg {
		return nil, nil, removeFile(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading queue segment: %w", err)
	}
	recs, bad := scanSegment(data)
	var ents []entry
	for _, r := range recs {
		if (position{id, r.off}).before(ack) {
			continue
		}
		ents = append(ents, entry{seg: id, off: r.off, size: r.size, points: r.header.points, enqueued: r.header.enqueued,
			enc: r.header.enc, rawSize: r.rawSize})
	}
	for _, d := range bad {
		if (position{id, d.off}).before(ack) {
			continue
		}
		rec.corruptRecords++
		rec.corruptPoints += d.points
		s.log.Warn("skipping damaged queue record", "segment", segmentName(id), "offset", d.off, "dataPoints", d.points, "tail", d.tail)
	}
	if len(ents) == 0 {
		return nil, nil, removeFile(path)
	}
	size := int64(len(data))
	if n := len(bad); n > 0 && bad[n-1].tail && bad[n-1].off > ents[len(ents)-1].off {
		size = bad[n-1].off
		if err := os.Truncate(path, size); err != nil {
			return nil, nil, fmt.Errorf("cutting damaged queue segment tail: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening queue segment: %w", err)
	}
	return ents, &segment{id: id, f: f, size: size}, nil
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing consumed queue segment: %w", err)
	}
	return nil
}

// readAck reads the ack position; a missing or damaged ack file means the start
// (records may be sent twice, none is lost).
func (s *diskStore) readAck() (position, error) {
	var b [ackFileSize]byte
	n, err := s.ack.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return position{}, fmt.Errorf("reading queue ack file: %w", err)
	}
	if n == 0 {
		return position{}, nil
	}
	if n < ackFileSize || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		s.log.Warn("ignoring damaged queue ack file, queued records may be sent twice")
		return position{}, nil
	}
	return position{seg: binary.LittleEndian.Uint64(b[0:8]), off: int64(binary.LittleEndian.Uint64(b[8:16]))}, nil
}

func (s *diskStore) writeAck(p position) error {
	var b [ackFileSize]byte
	binary.LittleEndian.PutUint64(b[0:8], p.seg)
	binary.LittleEndian.PutUint64(b[8:16], uint64(p.off))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	if _, err := s.ack.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("writing queue ack file: %w", err)
	}
	return nil
}

func (s *diskStore) append(recs []record, ents []entry) error {
	var total int64
	for _, e := range ents {
		total += e.size
	}
	if s.active == nil || (s.active.size > int64(len(segmentHeader)) && s.active.size+total > s.segTarget) {
		if err := s.roll(); err != nil {
			return err
		}
	}
	seg := s.active
	if err := s.write(seg, recs); err != nil {
		s.undo(seg)
		return fmt.Errorf("writing queue segment: %w", err)
	}
	if err := seg.f.Sync(); err != nil {
		s.undo(seg)
		return fmt.Errorf("syncing queue segment: %w", err)
	}
	off := seg.size
	for i := range ents {
		ents[i].seg, ents[i].off = seg.id, off
		off += ents[i].size
	}
	seg.size = off
	return nil
}

// write writes recs at the end of seg without copying their large parts.
func (s *diskStore) write(seg *segment, recs []record) error {
	off := seg.size
	buf := s.wbuf[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := seg.f.WriteAt(buf, off)
		off += int64(len(buf))
		buf = buf[:0]
		return err
	}
	for _, rec := range recs {
		for _, p := range rec {
			if len(p) >= directWriteMin {
				if err := flush(); err != nil {
					return err
				}
				if _, err := seg.f.WriteAt(p, off); err != nil {
					return err
				}
				off += int64(len(p))
				continue
			}
			if len(buf)+len(p) > wbufSize {
				if err := flush(); err != nil {
					return err
				}
			}
			if buf == nil {
				buf = make([]byte, 0, wbufSize)
			}
			buf = append(buf, p...)
		}
	}
	err := flush()
	s.wbuf = buf[:0]
	return err
}

// undo cuts a failed write off the active segment and starts a new segment for the
// next write: after a failed fsync nothing is known about the file's pages.
func (s *diskStore) undo(seg *segment) {
	_ = seg.f.Truncate(seg.size) // best effort: recovery skips a leftover torn record
	s.active = nil
}

// roll starts a new segment and makes its directory entry durable.
func (s *diskStore) roll() error {
	id := s.nextID
	path := filepath.Join(s.dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("creating queue segment: %w", err)
	}
	if _, err := f.Write(segmentHeader); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("writing queue segment header: %w", err)
	}
	if err := errors.Join(f.Sync(), syncDir(s.dir)); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("syncing new queue segment: %w", err)
	}
	s.nextID++
	seg := &segment{id: id, f: f, size: int64(len(segmentHeader))}
	s.segs = append(s.segs, seg)
	s.active = seg
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func (s *diskStore) segment(id uint64) *segment {
	for _, seg := range s.segs {
		if seg.id == id {
			return seg
		}
	}
	return nil
}

func (s *diskStore) readPayload(dst []byte, e *entry) ([]byte, error) {
	seg := s.segment(e.seg)
	if seg == nil {
		return dst, fmt.Errorf("segment %d is gone: %w", e.seg, errCorrupt)
	}
	var hdr [recordHeaderSize]byte
	if err := readFull(seg.f, hdr[:], e.off); err != nil {
		return dst, err
	}
	h, err := parseHeader(hdr[:])
	if err != nil || int64(h.length) != e.size-recordHeaderSize || h.enc != e.enc {
		return dst, fmt.Errorf("segment %d offset %d: header changed on disk: %w", e.seg, e.off, errCorrupt)
	}
	start := len(dst)
	dst = slices.Grow(dst, int(h.length))[:start+int(h.length)]
	if err := readFull(seg.f, dst[start:], e.off+recordHeaderSize); err != nil {
		return dst[:start], err
	}
	if err := checkRecord(hdr[:], dst[start:]); err != nil {
		return dst[:start], fmt.Errorf("segment %d offset %d: %w: %w", e.seg, e.off, err, errCorrupt)
	}
	return dst, nil
}

// readFull reads len(b) bytes at off. A file that ends early is damage, and so is
// a read error (a bad sector): retrying it would block the queue for good.
func readFull(f *os.File, b []byte, off int64) error {
	_, err := f.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("queue segment %s truncated: %w", filepath.Base(f.Name()), errCorrupt)
	}
	if err != nil {
		return fmt.Errorf("reading queue segment: %w: %w", err, errCorrupt)
	}
	return nil
}

func (s *diskStore) consumed(last, next *entry) error {
	err := s.writeAck(position{seg: last.seg, off: last.off + last.size})
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg == s.active || (next != nil && seg.id >= next.seg) {
			break
		}
		err = errors.Join(err, seg.f.Close(), removeFile(filepath.Join(s.dir, segmentName(seg.id))))
		s.segs[0] = nil
		s.segs = s.segs[1:]
	}
	return err
}

// close syncs the ack file and closes all files, releasing the directory lock.
func (s *diskStore) close() error {
	var errs []error
	if s.ack != nil {
		errs = append(errs, s.ack.Sync(), s.ack.Close())
	}
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
	}
	s.segs, s.active = nil, nil
	errs = append(errs, unlockFile(s.lock), s.lock.Close())
	return errors.Join(errs...)
}
