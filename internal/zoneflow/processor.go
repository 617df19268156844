package zoneflow

import (
	"cmp"
	"slices"
	"sync"

	"github.com/trellis-garden/trellis/internal/conntrack"
)

// Directions: who on this node reports the bytes.
const (
	dirEgress  uint8 = iota // the sender is on this node
	dirIngress              // the sender is outside the cluster, the receiver on this node
)

var directionNames = [...]string{dirEgress: "egress", dirIngress: "ingress"}

// folded replaces namespace and workload of records beyond --metrics.max-records.
const folded = "_other"

// recordKey is the full resolution of an aggregate: metrics project it down to
// the --labels set at scrape time, /flows shows it whole.
type recordKey struct {
	srcZone, dstZone    string
	class               string
	namespace, workload string // of the local endpoint
	direction           uint8
}

type record struct {
	key            recordKey
	bytes, packets uint64
}

// flowKey names a live conntrack entry: its kernel ID (a 32-bit hash: two of
// 100k live entries share one about once, as the birthday bound says) plus the
// original tuple's ports, protocol and conntrack zone, which make such a clash
// practically impossible. 12 bytes.
type flowKey struct {
	id           uint32
	sport, dport uint16
	zone         uint16
	proto        uint8
}

func keyOf(f *conntrack.Flow) flowKey {
	return flowKey{id: f.ID, sport: f.OrigSrcPort, dport: f.OrigDstPort, zone: f.Zone, proto: f.Proto}
}

// flowState is the per-flow memory: the counters last accounted and the two
// records (indexes, -1 for "not reported here") the flow's directions add to.
// Kept in a slab, addressed through a map of flowKey -> slab index, so one map
// lookup updates a flow in place and nothing per flow is a pointer the GC scans.
type flowState struct {
	origBytes, origPkts   uint64
	replyBytes, replyPkts uint64
	recOrig, recReply     int32
	gen                   uint32 // index generation the records were resolved with
	epoch                 uint32 // dump epoch last seen (or destroyed in)
	destroyed             bool   // tombstone: ignore stale dump copies until swept
}

// Processor turns conntrack dumps and DESTROY events into per-record byte and
// packet totals, counting each byte once: deltas against the last counters seen.
// It is safe for concurrent use.
type Processor struct {
	mu     sync.Mutex
	ix     *ipIndex
	gen    uint32
	epoch  uint32
	flows  map[flowKey]uint32
	slab   []flowState
	free   []uint32
	recIdx map[recordKey]int32
	recs   []record

	maxRecords int
	stats      procStats
	// baseline: entries first seen in the first dump set their counters'
	// baseline and count nothing (see BaselineFirstDump).
	baseline bool
}

// procStats are the processor's own counters, read by the metrics collector.
type procStats struct {
	lostFlows     uint64 // entries that vanished without a DESTROY event seen
	foldedRecords uint64 // new record keys folded into namespace/workload _other
	destroyEvents uint64
}

// NewProcessor returns a processor with an empty index; maxRecords bounds the
// distinct aggregates (and so the metric series) it keeps.
func NewProcessor(maxRecords int) *Processor {
	return &Processor{
		ix:         buildIndex("", nil, nil, nil, nil),
		flows:      map[flowKey]uint32{},
		recIdx:     map[recordKey]int32{},
		maxRecords: maxRecords,
	}
}

// BaselineFirstDump makes the first dump set each live entry's baseline instead of
// counting its counters whole. Those counters hold the entry's whole history (days,
// for a long-lived connection), which after every restart would land in the metrics
// at once; with a baseline a restart loses at most one dump interval of them.
// Call it before the first dump.
func (p *Processor) BaselineFirstDump() {
	p.mu.Lock()
	p.baseline = true
	p.mu.Unlock()
}

// SetIndex installs a new address index; flows resolve their records again on
// their next update.
func (p *Processor) SetIndex(ix *ipIndex) {
	p.mu.Lock()
	p.ix = ix
	p.gen++
	p.mu.Unlock()
}

// BeginDump starts a dump: flows observed from now on belong to it.
func (p *Processor) BeginDump() {
	p.mu.Lock()
	p.epoch++
	p.mu.Unlock()
}

// Observe accounts one entry from a dump.
func (p *Processor) Observe(f *conntrack.Flow) {
	p.mu.Lock()
	p.observe(f, false)
	p.mu.Unlock()
}

// Destroy accounts an entry's final counters from its DESTROY event.
func (p *Processor) Destroy(f *conntrack.Flow) {
	p.mu.Lock()
	p.stats.destroyEvents++
	p.observe(f, true)
	p.mu.Unlock()
}

// EndDump ends a complete dump: entries it did not contain are gone (their
// DESTROY event was lost or never sent), tombstones older than the dump are
// dropped. It returns how many entries vanished without a DESTROY event.
func (p *Processor) EndDump() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for k, i := range p.flows {
		st := &p.slab[i]
		if st.epoch == p.epoch {
			continue
		}
		if !st.destroyed {
			lost++
		}
		delete(p.flows, k)
		p.free = append(p.free, i)
	}
	p.stats.lostFlows += uint64(lost)
	return lost
}

func (p *Processor) observe(f *conntrack.Flow, destroy bool) {
	k := keyOf(f)
	i, ok := p.flows[k]
	var st *flowState
	if ok {
		st = &p.slab[i]
		if st.destroyed {
			// Already final: a dump that started before the DESTROY event may
			// still carry the entry with older counters.
			return
		}
		if st.gen != p.gen {
			p.resolve(f, st)
		}
	} else {
		if n := len(p.free); n > 0 {
			i = p.free[n-1]
			p.free = p.free[:n-1]
		} else {
			i = uint32(len(p.slab))
			p.slab = append(p.slab, flowState{})
		}
		st = &p.slab[i]
		*st = flowState{}
		p.resolve(f, st)
		p.flows[k] = i
		if p.baseline && p.epoch == 1 && !destroy {
			st.origBytes, st.origPkts = f.OrigBytes, f.OrigPackets
			st.replyBytes, st.replyPkts = f.ReplyBytes, f.ReplyPackets
		}
	}
	if r := st.recOrig; r >= 0 {
		rec := &p.recs[r]
		rec.bytes += delta(f.OrigBytes, &st.origBytes)
		rec.packets += delta(f.OrigPackets, &st.origPkts)
	}
	if r := st.recReply; r >= 0 {
		rec := &p.recs[r]
		rec.bytes += delta(f.ReplyBytes, &st.replyBytes)
		rec.packets += delta(f.ReplyPackets, &st.replyPkts)
	}
	st.epoch = p.epoch
	st.destroyed = destroy
}

// delta is what a counter grew by since last; a counter that went down was
// reset (another tool zeroed it, or the ID names a new entry) and counts whole.
func delta(cur uint64, last *uint64) uint64 {
	d := cur - *last
	if cur < *last {
		d = cur
	}
	*last = cur
	return d
}

// resolve finds the records of both directions of a flow. The initiator sent
// the orig bytes (the orig tuple's source: the pod before SNAT); the responder
// sent the reply bytes (the reply tuple's source: the backend after DNAT).
func (p *Processor) resolve(f *conntrack.Flow, st *flowState) {
	ini := p.ix.lookup(f.OrigSrc)
	resp := p.ix.lookup(f.ReplySrc)
	st.recOrig = p.recordFor(ini, resp)
	st.recReply = p.recordFor(resp, ini)
	st.gen = p.gen
}

// recordFor applies the counting rule to bytes sent from src to dst: the node of
// the sender reports them (egress); bytes from outside the cluster are reported
// by the receiver's node (ingress); anything else is another node's to report.
func (p *Processor) recordFor(src, dst endpoint) int32 {
	if src.class == classIgnore || dst.class == classIgnore {
		return -1
	}
	k := recordKey{srcZone: src.zone, dstZone: dst.zone, class: classOf(src, dst)}
	switch {
	case src.local:
		k.direction, k.namespace, k.workload = dirEgress, src.namespace, src.workload
	case src.class != classCluster && dst.local:
		k.direction, k.namespace, k.workload = dirIngress, dst.namespace, dst.workload
	default:
		return -1
	}
	if r, ok := p.recIdx[k]; ok {
		return r
	}
	if len(p.recs) >= p.maxRecords && k.workload != "" {
		p.stats.foldedRecords++
		k.namespace, k.workload = folded, folded
		if r, ok := p.recIdx[k]; ok {
			return r
		}
	}
	r := int32(len(p.recs))
	p.recs = append(p.recs, record{key: k})
	p.recIdx[k] = r
	return r
}

// snapshot copies the records and stats under the lock.
func (p *Processor) snapshot() ([]record, procStats, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.recs), p.stats, len(p.flows)
}

// top returns the n records with the most bytes.
func top(recs []record, n int) []record {
	slices.SortFunc(recs, func(a, b record) int {
		if c := cmp.Compare(b.bytes, a.bytes); c != 0 {
			return c
		}
		return cmp.Compare(a.key.srcZone+a.key.dstZone+a.key.namespace+a.key.workload, b.key.srcZone+b.key.dstZone+b.key.namespace+b.key.workload)
	})
	if len(recs) > n {
		recs = recs[:n]
	}
	return recs
}
