package zoneflow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The state file carries accounting across a restart (rollout, node drain,
// crash loop after a graceful stop): written at SIGTERM after a final dump,
// read and removed at start. It holds
//   - the last counters of every open flow, so that the first dump after the
//     restart counts what those flows sent meanwhile instead of setting a
//     baseline, and
//   - per aggregate, the bytes and packets counted after the last /metrics
//     scrape, which no scrape saw: the next run starts its counters with them.
//
// Layout (integers big-endian, "uv" an unsigned varint):
//
//	magic "TZFS" | version 1 | flags (bit 0: every open flow is in the file)
//	uv len + boot ID | uv network namespace inode | 8 bytes unix nanoseconds written
//	uv records | per record: 5 x (uv len + string) srcZone dstZone class namespace workload, direction byte, uv bytes, uv packets
//	uv flows   | per flow: id u32, zone u16, sport u16, dport u16, proto u8, uv origBytes origPkts replyBytes replyPkts
//	CRC-32C of everything before, u32
//
// A file that is damaged (checksum, syntax, bounds), from another boot or
// network namespace, or older than --state.max-age is ignored with a log line
// and state_loads_total{result}; the daemon then starts as without a file.
const (
	stateMagic   = "TZFS"
	stateVersion = 1
	// maxStateString bounds every string: zone labels and Kubernetes names are
	// at most 253 bytes (a workload is kind/name).
	maxStateString = 512
	// maxStateRecords bounds the aggregates in a file whatever
	// --metrics.max-records says.
	maxStateRecords   = 1 << 16
	stateFlagComplete = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Reasons a state file is not used, the result label of state_loads_total.
const (
	loadRestored   = "restored"
	loadMissing    = "missing"
	loadDamaged    = "damaged"
	loadStale      = "stale"
	loadOtherBoot  = "other_boot"
	loadOtherNetNS = "other_netns"
	loadError      = "error"
)

// savedFlow is one open flow's last counters.
type savedFlow struct {
	key                   flowKey
	origBytes, origPkts   uint64
	replyBytes, replyPkts uint64
}

// savedRecord is what an aggregate counted after the last scrape.
type savedRecord struct {
	key            recordKey
	bytes, packets uint64
}

// stateFile is the decoded file.
type stateFile struct {
	complete bool
	bootID   string
	netns    uint64
	written  time.Time
	records  []savedRecord
	flows    []savedFlow
}

// identity tells which boot and network namespace a state belongs to.
type identity struct {
	bootID string
	netns  uint64
}

func encodeState(s *stateFile) []byte {
	b := []byte(stateMagic)
	flags := byte(0)
	if s.complete {
		flags |= stateFlagComplete
	}
	b = append(b, stateVersion, flags)
	b = appendString(b, s.bootID)
	b = binary.AppendUvarint(b, s.netns)
	b = binary.BigEndian.AppendUint64(b, uint64(s.written.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(s.records)))
	for _, r := range s.records {
		for _, str := range []string{r.key.srcZone, r.key.dstZone, r.key.class, r.key.namespace, r.key.workload} {
			b = appendString(b, str)
		}
		b = append(b, r.key.direction)
		b = binary.AppendUvarint(b, r.bytes)
		b = binary.AppendUvarint(b, r.packets)
	}
	b = binary.AppendUvarint(b, uint64(len(s.flows)))
	for _, f := range s.flows {
		b = binary.BigEndian.AppendUint32(b, f.key.id)
		b = binary.BigEndian.AppendUint16(b, f.key.zone)
		b = binary.BigEndian.AppendUint16(b, f.key.sport)
		b = binary.BigEndian.AppendUint16(b, f.key.dport)
		b = append(b, f.key.proto)
		for _, v := range []uint64{f.origBytes, f.origPkts, f.replyBytes, f.replyPkts} {
			b = binary.AppendUvarint(b, v)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errState = errors.New("malformed state file")

// stateReader decodes with bounds: every read fails once the input is short.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errState, what)
	}
}

func (r *stateReader) bytes(n int, what string) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail(what)
		return make([]byte, max(n, 0))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) str(what string) string {
	n := r.uvarint(what)
	if n > maxStateString {
		r.fail(what + " too long")
		return ""
	}
	return string(r.bytes(int(n), what))
}

// decodeState parses a state file of at most maxFlows flows. It never panics
// and allocates in proportion to the input, not to the counts it claims.
func decodeState(b []byte, maxFlows int) (*stateFile, error) {
	if len(b) < len(stateMagic)+2+4 || string(b[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("%w: not a state file", errState)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errState)
	}
	r := &stateReader{b: body[len(stateMagic):]}
	hdr := r.bytes(2, "header")
	if hdr[0] != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errState, hdr[0], stateVersion)
	}
	s := &stateFile{complete: hdr[1]&stateFlagComplete != 0}
	s.bootID = r.str("boot ID")
	s.netns = r.uvarint("network namespace")
	s.written = time.Unix(0, int64(binary.BigEndian.Uint64(r.bytes(8, "time"))))
	nrec := r.uvarint("record count")
	// A record takes at least 8 bytes, a flow at least 15: a count the input
	// cannot hold is rejected before anything is allocated for it.
	if nrec > maxStateRecords || nrec > uint64(len(r.b)/8) {
		return nil, fmt.Errorf("%w: %d records", errState, nrec)
	}
	s.records = make([]savedRecord, 0, nrec)
	for range nrec {
		var k recordKey
		for _, p := range []*string{&k.srcZone, &k.dstZone, &k.class, &k.namespace, &k.workload} {
			*p = r.str("record")
		}
		k.direction = r.bytes(1, "direction")[0]
		if int(k.direction) >= len(directionNames) {
			r.fail("direction")
		}
		s.records = append(s.records, savedRecord{key: k, bytes: r.uvarint("bytes"), packets: r.uvarint("packets")})
	}
	nflows := r.uvarint("flow count")
	if r.err == nil && (nflows > uint64(maxFlows) || nflows > uint64(len(r.b)/15)) {
		return nil, fmt.Errorf("%w: %d flows (at most %d)", errState, nflows, maxFlows)
	}
	if r.err != nil {
		return nil, r.err
	}
	s.flows = make([]savedFlow, 0, nflows)
	for range nflows {
		k := r.bytes(11, "flow")
		f := savedFlow{key: flowKey{id: binary.BigEndian.Uint32(k), zone: binary.BigEndian.Uint16(k[4:]),
			sport: binary.BigEndian.Uint16(k[6:]), dport: binary.BigEndian.Uint16(k[8:]), proto: k[10]}}
		f.origBytes, f.origPkts = r.uvarint("counter"), r.uvarint("counter")
		f.replyBytes, f.replyPkts = r.uvarint("counter"), r.uvarint("counter")
		s.flows = append(s.flows, f)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

// writeState writes the file atomically: a temporary file in the same
// directory, synced, renamed over the old one.
func writeState(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readState reads, checks and removes the file: a state is used at most once,
// so that a crash later in this run cannot restore it again (which would count
// what this run already counted). The result is one of the load* reasons.
func readState(path string, maxFlows int, maxAge time.Duration, self identity, now time.Time) (*stateFile, string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, loadMissing, nil
	}
	if err != nil {
		return nil, loadError, err
	}
	defer f.Close()
	defer os.Remove(path)
	// The largest valid file: header, records, flows at their widest varints.
	limit := int64(64 + 2*maxStateString + maxStateRecords*(5*(maxStateString+2)+21) + maxFlows*(11+40) + 8)
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, loadError, err
	}
	if int64(len(b)) > limit {
		return nil, loadDamaged, fmt.Errorf("%w: larger than %d bytes", errState, limit)
	}
	s, err := decodeState(b, maxFlows)
	switch {
	case err != nil:
		return nil, loadDamaged, err
	case s.bootID != self.bootID:
		return nil, loadOtherBoot, fmt.Errorf("written in boot %s, this is boot %s", s.bootID, self.bootID)
	case s.netns != self.netns:
		return nil, loadOtherNetNS, fmt.Errorf("written in network namespace %d, this is %d", s.netns, self.netns)
	case now.Sub(s.written) > maxAge || s.written.After(now.Add(time.Minute)):
		return nil, loadStale, fmt.Errorf("written at %s, older than %s", s.written.UTC().Format(time.RFC3339), maxAge)
	}
	return s, loadRestored, nil
}

// selfIdentity reads the boot ID and the network namespace inode.
func selfIdentity(procfs string) (identity, error) {
	b, err := os.ReadFile(filepath.Join(procfs, "sys/kernel/random/boot_id"))
	if err != nil {
		return identity{}, fmt.Errorf("read boot ID: %w", err)
	}
	var st os.FileInfo
	if st, err = os.Stat(filepath.Join(procfs, "thread-self/ns/net")); err != nil {
		if st, err = os.Stat(filepath.Join(procfs, "self/ns/net")); err != nil {
			return identity{}, fmt.Errorf("network namespace: %w", err)
		}
	}
	return identity{bootID: strings.TrimSpace(string(b)), netns: inode(st)}, nil
}

// markScraped remembers what the metrics showed: the state file carries only
// what was counted after the last scrape.
func (p *Processor) markScraped(recs []record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cap(p.scraped) < len(recs) {
		p.scraped = make([]record, len(recs), cap(recs))
	}
	p.scraped = p.scraped[:len(recs)]
	copy(p.scraped, recs)
}

// saveState exports the open flows (live ones; at most maxFlows, the file is
// then marked incomplete) and what each aggregate counted since the last scrape.
func (p *Processor) saveState(maxFlows int) *stateFile {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &stateFile{complete: true}
	for i, r := range p.recs {
		var seen record
		if i < len(p.scraped) {
			seen = p.scraped[i]
		}
		if r.bytes > seen.bytes || r.packets > seen.packets {
			s.records = append(s.records, savedRecord{key: r.key, bytes: r.bytes - seen.bytes, packets: r.packets - seen.packets})
		}
	}
	n := 0
	p.flows.all(func(_ uint32, st *flowState) {
		if st.status == stLive {
			n++
		}
	})
	s.flows = make([]savedFlow, 0, min(n, maxFlows))
	p.flows.all(func(_ uint32, st *flowState) {
		if st.status != stLive {
			return
		}
		if len(s.flows) == maxFlows {
			s.complete = false
			return
		}
		s.flows = append(s.flows, savedFlow{key: st.key(), origBytes: st.origBytes, origPkts: uint64(st.origPkts), replyBytes: st.replyBytes, replyPkts: uint64(st.replyPkts)})
	})
	return s
}

// restoreState loads a state before the first dump: the aggregates start with
// what the previous run counted after its last scrape, the flows with their
// last counters (the first dump counts the difference). With a complete file,
// entries the first dump finds that the file does not hold started after it
// was written and count whole.
func (p *Processor) restoreState(s *stateFile) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range s.records {
		if i := p.recordByKey(r.key); i >= 0 {
			p.recs[i].bytes += r.bytes
			p.recs[i].packets += r.packets
		}
	}
	for _, f := range s.flows {
		if _, ok := p.flows.find(f.key, ^uint32(0)); ok {
			continue
		}
		_, st := p.alloc(f.key)
		st.origBytes, st.origPkts, st.replyBytes, st.replyPkts = f.origBytes, uint32(f.origPkts), f.replyBytes, uint32(f.replyPkts)
		st.status = stRestored
	}
	p.restored = s.complete
}
