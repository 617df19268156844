package udpbatch

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// Payload markers in the first byte of every load datagram: the sink counts
// only measured datagrams, so late warm-up datagrams do not skew a run.
const (
	markMeasured = 0
	markWarmup   = 1
)

// LoadConfig configures a [Load]. Zero fields take the documented defaults.
type LoadConfig struct {
	// Size is the payload size of each datagram in bytes (default 100).
	Size int
	// Batch is the number of datagrams per WriteBatch and ReadBatch call
	// (default DefaultBatch).
	Batch int
	// Quiet is how long the sink waits for one more datagram before it
	// considers the rest lost (default 250ms; generous because the machines
	// running benchmarks are shared and a relay may be descheduled).
	Quiet time.Duration
	// WarmupTimeout bounds Warmup (default 10s).
	WarmupTimeout time.Duration
	// Header is copied to the start of every datagram, for relays that look at
	// their packets (e.g. a WireGuard transport header); the warm-up marker
	// follows it. Size is raised to fit it.
	Header []byte
	// Window > 0 bounds the datagrams in flight (sent but not yet at the
	// sink): the source waits for the sink to catch up, so a relay that is
	// slower than the source is measured at its own pace instead of losing
	// most datagrams in its receive queue. If the sink sees nothing for Quiet
	// the source goes on regardless (the rest were lost). 0: no bound.
	Window int
	// Segments > 1 sends runs of that many datagrams per message (Message.Seg,
	// at most MaxSegments), as wireguard-go does with UDP_SEGMENT; the source
	// Conn sends them with one system call each if its GSO is on. Batch then
	// counts messages, not datagrams.
	Segments int
}

// Load sends datagrams from a source Conn to the input of a relay under test
// and counts what the relay delivers to a sink Conn. It is the load
// generator of the forwarder and relay benchmarks: a benchmark builds its
// relay between src and sink, calls Warmup, resets its timer, calls Run with
// b.N and reports the LoadResult. The relay must deliver payloads unchanged:
// their first byte tells warm-up datagrams from measured ones.
//
// A Load is not safe for concurrent use. It owns the sink's read deadline.
type Load struct {
	src, sink *Conn
	to        netip.AddrPort
	cfg       LoadConfig
	out       []Message // one batch of measured datagrams, sharing one payload
	warm      []Message // one warm-up datagram
	in        []Message // the sink's batch
	mark      int       // offset of the warm-up marker
	received  atomic.Int64
	progress  chan struct{} // the sink received something (Window)
}

// NewLoad prepares a load from src to the relay input to, received on sink.
func NewLoad(src, sink *Conn, to netip.AddrPort, cfg LoadConfig) (*Load, error) {
	if src == nil || sink == nil {
		return nil, errors.New("udpbatch: NewLoad needs a source and a sink Conn")
	}
	if !to.IsValid() {
		return nil, errors.New("udpbatch: NewLoad needs a destination")
	}
	if cfg.Size <= 0 {
		cfg.Size = 100
	}
	cfg.Size = min(max(cfg.Size, len(cfg.Header)+1), MaxDatagram)
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	cfg.Batch = min(cfg.Batch, MaxBatch)
	if cfg.Quiet <= 0 {
		cfg.Quiet = 250 * time.Millisecond
	}
	if cfg.WarmupTimeout <= 0 {
		cfg.WarmupTimeout = 10 * time.Second
	}
	l := &Load{src: src, sink: sink, to: to, cfg: cfg, progress: make(chan struct{}, 1)}
	payload := make([]byte, cfg.Size)
	for i := range payload {
		payload[i] = byte(i)
	}
	copy(payload, cfg.Header)
	l.mark = len(cfg.Header)
	payload[l.mark] = markMeasured
	cfg.Segments = min(max(cfg.Segments, 1), MaxSegments)
	run := payload
	if cfg.Segments > 1 {
		run = make([]byte, 0, cfg.Size*cfg.Segments)
		for range cfg.Segments {
			run = append(run, payload...)
		}
	}
	l.cfg = cfg
	l.out = make([]Message, cfg.Batch)
	for i := range l.out {
		l.out[i] = Message{Buf: run, N: len(run), Addr: to}
		if cfg.Segments > 1 {
			l.out[i].Seg = cfg.Size
		}
	}
	warm := append([]byte(nil), payload...)
	warm[l.mark] = markWarmup
	l.warm = []Message{{Buf: warm, N: cfg.Size, Addr: to}}
	l.in = NewMessages(cfg.Batch, MaxDatagram) // the sink may read with GRO
	return l, nil
}

// Warmup sends warm-up datagrams, one per 50ms, until one reaches the sink
// (the relay is set up, handshakes are done), ctx ends or WarmupTimeout
// passes.
func (l *Load) Warmup(ctx context.Context) error {
	deadline := time.Now().Add(l.cfg.WarmupTimeout)
	defer func() { _ = l.sink.UDPConn().SetReadDeadline(time.Time{}) }()
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := l.src.WriteBatch(l.warm); err != nil {
			return err
		}
		if err := l.sink.UDPConn().SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			return err
		}
		n, err := l.sink.ReadBatch(l.in)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return errors.New("udpbatch: warm-up datagram did not arrive")
}

// Run sends packets datagrams as fast as the source accepts them and counts
// those reaching the sink. It returns once the sink has them all, or when no
// datagram arrived for Quiet after the last was sent (the rest are lost), so
// it never hangs. The
// error is ctx's if ctx ended, else the first source or sink error.
func (l *Load) Run(ctx context.Context, packets int) (LoadResult, error) {
	if packets <= 0 {
		return LoadResult{}, nil
	}
	done := make(chan drainResult, 1)
	var sending atomic.Bool
	sending.Store(true)
	l.received.Store(0)
	start := time.Now()
	go func() { done <- l.drain(packets, &sending) }()
	sent, serr := l.blast(ctx, packets)
	sending.Store(false)
	d := <-done
	res := LoadResult{Sent: sent, Received: d.packets, Bytes: d.bytes}
	if d.packets > 0 {
		res.Elapsed = d.last.Sub(start)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, errors.Join(serr, d.err)
}

// blast sends packets measured datagrams and returns how many the kernel
// accepted.
func (l *Load) blast(ctx context.Context, packets int) (int, error) {
	sent := 0
	per := l.cfg.Segments
	for left := packets; left > 0; {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		l.wait(sent)
		k := 0
		for ; k < len(l.out) && left > 0; k++ {
			d := min(left, per)
			l.out[k].N = d * l.cfg.Size
			left -= d
		}
		n, err := l.src.WriteBatch(l.out[:k])
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// wait blocks while more than Window datagrams are in flight, at most Quiet
// without progress at the sink.
func (l *Load) wait(sent int) {
	if l.cfg.Window <= 0 {
		return
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for int64(sent)-l.received.Load() > int64(l.cfg.Window) {
		if timer == nil {
			timer = time.NewTimer(l.cfg.Quiet)
		}
		select {
		case <-l.progress:
		case <-timer.C:
			return
		}
	}
}

// drainResult is what the sink saw.
type drainResult struct {
	packets int
	bytes   int64
	last    time.Time
	err     error
}

// drain counts measured datagrams until want arrived or, once sending is
// false, none came for Quiet. While the source is still sending, a quiet
// period (the relay or the source was descheduled) does not end the run.
func (l *Load) drain(want int, sending *atomic.Bool) drainResult {
	var d drainResult
	sc := l.sink.UDPConn()
	defer func() { _ = sc.SetReadDeadline(time.Time{}) }()
	for d.packets < want {
		if err := sc.SetReadDeadline(time.Now().Add(l.cfg.Quiet)); err != nil {
			d.err = err
			return d
		}
		n, err := l.sink.ReadBatch(l.in)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && sending.Load() {
				continue
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				d.err = err
			}
			return d
		}
		got := 0
		for i := range l.in[:n] {
			m := &l.in[i]
			for j := range m.Datagrams() {
				if b := m.Segment(j); len(b) > l.mark && b[l.mark] == markMeasured {
					got++
					d.bytes += int64(len(b))
				}
			}
		}
		if got > 0 {
			d.packets += got
			d.last = time.Now()
			l.received.Store(int64(d.packets))
			select {
			case l.progress <- struct{}{}:
			default:
			}
		}
	}
	return d
}

// LoadResult is the outcome of a [Load] run.
type LoadResult struct {
	Sent     int           // datagrams the source's kernel accepted
	Received int           // measured datagrams that reached the sink
	Bytes    int64         // their payload bytes
	Elapsed  time.Duration // from the first send to the last arrival
}

// PacketsPerSecond is the delivered datagram rate.
func (r LoadResult) PacketsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// MbitPerSecond is the delivered payload rate in megabits (10^6 bits) per
// second.
func (r LoadResult) MbitPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / 1e6 / r.Elapsed.Seconds()
}

// LossRatio is the fraction of sent datagrams that did not arrive.
func (r LoadResult) LossRatio() float64 {
	if r.Sent <= 0 || r.Received >= r.Sent {
		return 0
	}
	return float64(r.Sent-r.Received) / float64(r.Sent)
}

// MetricReporter is the part of *testing.B that Report uses.
type MetricReporter interface {
	ReportMetric(n float64, unit string)
}

// Report reports the result as benchmark metrics: "pkts/s", "Mbit/s",
// "loss-%" and "ns/op", the latter replacing the benchmark's own ns/op with
// nanoseconds per delivered datagram (the benchmark's timer also counts the
// final quiet period and sees lost datagrams as operations).
func (r LoadResult) Report(m MetricReporter) {
	m.ReportMetric(r.PacketsPerSecond(), "pkts/s")
	m.ReportMetric(r.MbitPerSecond(), "Mbit/s")
	m.ReportMetric(100*r.LossRatio(), "loss-%")
	if r.Received > 0 {
		m.ReportMetric(float64(r.Elapsed.Nanoseconds())/float64(r.Received), "ns/op")
	}
}
