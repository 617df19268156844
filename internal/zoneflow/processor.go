package zoneflow

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

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
// the --metrics.labels set at scrape time, /flows shows it whole.
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

// Flow states. A flow is live while dumps see it. One missing from a dump
// becomes vanished: a tombstone holding its last counters, so that a DESTROY
// event read later (the event reader lags, or the dump itself expired the entry
// and the kernel sent the event after the dump) adds only the difference, and a
// dump that sees it again (a dump can miss an entry) resumes it. A vanished flow
// is dropped as lost when a further dump confirms it gone and the event reader
// has since found its queue empty: its DESTROY event, sent before the entry left
// the table, was lost (ENOBUFS) or never sent. A destroyed flow has been
// accounted to its final counters; its tombstone ignores stale dump copies and
// duplicated events until a dump that began after the DESTROY has ended. A
// restored flow comes from the state file of the previous run: its last
// counters, not yet matched to a live entry.
const (
	stLive uint8 = iota
	stVanished
	stDestroyed
	stRestored
	stFree // a free slab position of the flowTable
)

// vanishedDumps: a vanished flow is dropped after this many further dumps even
// when the event reader never reported an empty queue since (it is not
// running, or events keep arriving faster than it reads them), so tombstones
// stay bounded. A reader that lags this far behind has overflowed long since.
const vanishedDumps = 30

// flowState is the per-flow memory, kept in a flowTable: the flow's key, the
// counters last accounted and the two records (indexes, -1 for "not reported
// here") the flow's directions add to. 48 bytes, no pointers: packet counters
// are kept modulo 2^32 (a flow sends fewer than 4G packets between two dumps,
// so their deltas stay exact), the epoch modulo 2^16 (live flows are at most
// one dump old, tombstones a few dozen), the index generation modulo 2^16 (a
// flow is resolved again when it differs; the index is rebuilt at most once a
// second, so a flow would have to go unseen for 18 hours of rebuilds for a
// stale resolution to pass for a current one).
type flowState struct {
	origBytes, replyBytes uint64
	origPkts, replyPkts   uint32
	recOrig, recReply     int32
	// The key (see flowKey), inline so that status fits beside it.
	id           uint32
	sport, dport uint16
	zone         uint16
	proto        uint8
	status       uint8
	gen          uint16 // index generation the records were resolved with
	// epoch: live, the last dump that saw it; vanished, the dump that missed it
	// first; destroyed, the dump epoch current at the DESTROY.
	epoch uint16
}

func (st *flowState) key() flowKey {
	return flowKey{id: st.id, sport: st.sport, dport: st.dport, zone: st.zone, proto: st.proto}
}

func (st *flowState) setKey(k flowKey) {
	st.id, st.sport, st.dport, st.zone, st.proto = k.id, k.sport, k.dport, k.zone, k.proto
}

type replacedFlow struct {
	origBytes, replyBytes uint64
	origPkts, replyPkts   uint32
	epoch                 uint32 // the dump that found it replaced
}

// Processor turns conntrack dumps and DESTROY events into per-record byte and
// packet totals, counting each byte once whatever the order in which dumps and
// events report a flow: deltas against the last counters seen, tombstones for
// flows that left the table. It is safe for concurrent use.
type Processor struct {
	mu    sync.Mutex
	ix    *ipIndex
	gen   uint32
	epoch uint32
	flows *flowTable
	// cursor is the slab position of the flow the running dump observed
	// last: its next entry is most likely the next position.
	cursor uint32
	recIdx map[recordKey]int32
	recs   []record

	// ended is the last dump that ended and when; idleEpoch the last ended
	// dump after whose end the event reader found its queue empty.
	ended     uint32
	endedAt   time.Time
	idleEpoch uint32
	idleAt    time.Time
	idleCond  *sync.Cond

	// replaced holds the last counters of entries a dump found replaced by a
	// new entry under the same key (same tuple, same kernel memory, so the
	// same conntrack ID): the old entry's DESTROY, sent before the new entry
	// could exist, is the next one for the key and counts against these.
	replaced map[flowKey]replacedFlow

	// scraped are the records as the last /metrics scrape showed them.
	scraped []record

	maxRecords int
	stats      procStats
	// baseline: entries first seen in the first dump set their counters'
	// baseline and count nothing (see BaselineFirstDump).
	baseline bool
	// restored: flows were restored from a complete state file; entries the
	// first dump finds that the file does not hold started after it was
	// written and count whole.
	restored bool
}

// procStats are the processor's own counters, read by the metrics collector.
type procStats struct {
	lostFlows     uint64 // entries that vanished without a DESTROY event seen
	foldedRecords uint64 // new record keys folded into namespace/workload _other
	destroyEvents uint64
	staleEvents   uint64 // DESTROY events of flows already accounted to the end (duplicates)
	resumedFlows  uint64 // vanished flows a later dump saw again
	lateDestroys  uint64 // DESTROY events of vanished flows: counted the difference only
	restoredSeen  uint64 // restored flows matched to a live entry
	restoredGone  uint64 // restored flows that ended while the daemon was down
	resets        uint64 // counters lower than last seen: zeroed, or the key names a new entry
	tableBytes    uint64 // memory of the flow table (set by snapshot)
}

// NewProcessor returns a processor with an empty index; maxRecords bounds the
// distinct aggregates (and so the metric series) it keeps.
func NewProcessor(maxRecords int) *Processor {
	p := &Processor{
		ix:         buildIndex("", nil, nil, nil, nil),
		flows:      newFlowTable(),
		replaced:   map[flowKey]replacedFlow{},
		recIdx:     map[recordKey]int32{},
		maxRecords: maxRecords,
	}
	p.idleCond = sync.NewCond(&p.mu)
	return p
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

// BeginDump starts a dump: flows observed from now on belong to it. It
// returns the dump's epoch.
func (p *Processor) BeginDump() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	p.cursor = ^uint32(0)
	return p.epoch
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

// EventsIdle tells that the event reader found its queue empty at since:
// every DESTROY event the kernel sent before then has been passed to Destroy
// (or was lost). Flows that vanished from a dump that ended before since and
// are still without their event will never get one.
func (p *Processor) EventsIdle(since time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if since.After(p.idleAt) {
		p.idleAt = since
	}
	if p.ended > p.idleEpoch && since.After(p.endedAt) {
		p.idleEpoch = p.ended
		p.idleCond.Broadcast()
	}
}

// WaitEventsIdle waits until the event reader has been idle after the end of
// dump epoch (every DESTROY event of an entry that dump missed is accounted),
// or until ctx ends; it reports whether it got there.
func (p *Processor) WaitEventsIdle(ctx context.Context, epoch uint32) bool {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idleCond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.idleEpoch < epoch && ctx.Err() == nil {
		p.idleCond.Wait()
	}
	return p.idleEpoch >= epoch
}

// EndDump ends a complete dump. Live flows it did not contain become vanished
// tombstones; vanished flows it confirms gone are dropped as lost once the
// event reader has been idle since they vanished; destroyed tombstones older
// than the dump are dropped. It returns how many flows were dropped as lost.
func (p *Processor) EndDump() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.epoch
	e16, idle16 := uint16(e), uint16(p.idleEpoch)
	lost := 0
	p.flows.all(func(i uint32, st *flowState) {
		drop := false
		switch st.status {
		case stLive:
			if st.epoch != e16 {
				st.status, st.epoch = stVanished, e16
			}
		case stVanished:
			if st.epoch != e16 && (int16(idle16-st.epoch) >= 0 || e16-st.epoch >= vanishedDumps) {
				drop = true
				lost++
			}
		case stDestroyed:
			drop = st.epoch != e16
		case stRestored:
			// Ended while the daemon was down: the bytes of its last moments
			// are not known.
			drop = true
			p.stats.restoredGone++
		}
		if drop {
			p.flows.remove(i)
		}
	})
	for k, r := range p.replaced {
		// The old entry's DESTROY was lost (or the counters were zeroed by
		// another tool and there is no old entry).
		if r.epoch != e && (r.epoch <= p.idleEpoch || e-r.epoch >= vanishedDumps) {
			delete(p.replaced, k)
		}
	}
	p.stats.lostFlows += uint64(lost)
	p.ended, p.endedAt = e, time.Now()
	return lost
}

func (p *Processor) alloc(k flowKey) (uint32, *flowState) {
	i := p.flows.insert(k)
	return i, p.flows.at(i)
}

func (p *Processor) observe(f *conntrack.Flow, destroy bool) {
	k := keyOf(f)
	if destroy && len(p.replaced) > 0 {
		if r, ok := p.replaced[k]; ok {
			// The replaced entry's DESTROY: its final counters against its
			// last ones; the new entry's state stays as it is.
			delete(p.replaced, k)
			p.stats.lateDestroys++
			var old flowState
			p.resolve(f, &old)
			p.addDelta(&old, f, &r.origBytes, &r.origPkts, &r.replyBytes, &r.replyPkts)
			return
		}
	}
	guess := ^uint32(0)
	if !destroy {
		guess = p.cursor + 1
	}
	i, ok := p.flows.find(k, guess)
	var st *flowState
	if ok {
		st = p.flows.at(i)
		switch st.status {
		case stDestroyed:
			// Already final: a dump that started before the DESTROY event may
			// still carry the entry with older counters, or the event came
			// twice (with the same counters). A DESTROY with other counters
			// is of a new entry with the same key (same tuple, same kernel
			// memory) that lived and ended between two dumps: it counts whole.
			if !destroy {
				return
			}
			if f.OrigBytes == st.origBytes && f.ReplyBytes == st.replyBytes &&
				uint32(f.OrigPackets) == st.origPkts && uint32(f.ReplyPackets) == st.replyPkts {
				p.stats.staleEvents++
				return
			}
			p.stats.resets++
			st.origBytes, st.origPkts, st.replyBytes, st.replyPkts = 0, 0, 0, 0
		case stVanished:
			if destroy {
				p.stats.lateDestroys++
			} else {
				p.stats.resumedFlows++
			}
		case stRestored:
			p.stats.restoredSeen++
			p.resolve(f, st)
		}
		if st.gen != uint16(p.gen) {
			p.resolve(f, st)
		}
	} else {
		i, st = p.alloc(k)
		p.resolve(f, st)
		if p.baseline && !p.restored && p.epoch == 1 && p.ended == 0 && !destroy {
			st.origBytes, st.origPkts = f.OrigBytes, uint32(f.OrigPackets)
			st.replyBytes, st.replyPkts = f.ReplyBytes, uint32(f.ReplyPackets)
		}
	}
	if f.OrigBytes < st.origBytes || f.ReplyBytes < st.replyBytes {
		p.stats.resets++
		if !destroy && (st.status == stLive || st.status == stVanished) {
			p.replaced[k] = replacedFlow{origBytes: st.origBytes, replyBytes: st.replyBytes,
				origPkts: st.origPkts, replyPkts: st.replyPkts, epoch: p.epoch}
		}
	}
	p.addDelta(st, f, &st.origBytes, &st.origPkts, &st.replyBytes, &st.replyPkts)
	st.epoch = uint16(p.epoch)
	st.status = stLive
	if destroy {
		st.status = stDestroyed
	} else {
		p.cursor = i
	}
}

// addDelta adds what f's counters grew by since the last ones given to the
// records of st.
func (p *Processor) addDelta(st *flowState, f *conntrack.Flow, ob *uint64, op *uint32, rb *uint64, rp *uint32) {
	if r := st.recOrig; r >= 0 {
		rec := &p.recs[r]
		db, dp := delta(f.OrigBytes, f.OrigPackets, ob, op)
		rec.bytes += db
		rec.packets += dp
	}
	if r := st.recReply; r >= 0 {
		rec := &p.recs[r]
		db, dp := delta(f.ReplyBytes, f.ReplyPackets, rb, rp)
		rec.bytes += db
		rec.packets += dp
	}
}

// delta is what a direction's counters grew by since last; counters that went
// down were reset (another tool zeroed them, or the ID names a new entry) and
// count whole. Packets are compared modulo 2^32.
func delta(bytes, packets uint64, lastBytes *uint64, lastPkts *uint32) (uint64, uint64) {
	var db, dp uint64
	if bytes < *lastBytes {
		db, dp = bytes, packets
	} else {
		db, dp = bytes-*lastBytes, uint64(uint32(packets)-*lastPkts)
	}
	*lastBytes, *lastPkts = bytes, uint32(packets)
	return db, dp
}

// resolve finds the records of both directions of a flow. The initiator sent
// the orig bytes (the orig tuple's source: the pod before SNAT); the responder
// sent the reply bytes (the reply tuple's source: the backend after DNAT).
func (p *Processor) resolve(f *conntrack.Flow, st *flowState) {
	ini := p.ix.lookup(f.OrigSrc)
	resp := p.ix.lookup(f.ReplySrc)
	st.recOrig = p.recordFor(ini, resp)
	st.recReply = p.recordFor(resp, ini)
	st.gen = uint16(p.gen)
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
	return p.recordByKey(k)
}

// recordByKey finds or adds the record of k, folding namespace and workload
// into _other beyond maxRecords.
func (p *Processor) recordByKey(k recordKey) int32 {
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

// TableBytes is the memory the per-flow state holds.
func (p *Processor) TableBytes() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flows.bytes()
}

// snapshot copies the records and stats under the lock.
func (p *Processor) snapshot() ([]record, procStats, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.tableBytes = p.flows.bytes()
	return slices.Clone(p.recs), st, p.flows.len()
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
