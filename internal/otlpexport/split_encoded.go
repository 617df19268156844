package otlpexport

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the messages splitEncoded walks.
const (
	fieldResourceMetrics = 1 // MetricsData
	fieldScopeMetrics    = 2 // ResourceMetrics
	fieldMetrics         = 2 // ScopeMetrics
	fieldDataPoints      = 1 // Gauge, Sum, Histogram, ExponentialHistogram, Summary
)

// isDataField tells whether num is one of Metric's data oneof fields (gauge,
// sum, histogram, exponential_histogram, summary).
func isDataField(num protowire.Number) bool {
	switch num {
	case 5, 7, 9, 10, 11:
		return true
	}
	return false
}

var errMalformed = errors.New("malformed MetricsData encoding")

// Parts of one chunk of a split encoded MetricsData. Shells hold the encoded
// fields of a message other than its repeated children (resource, scope, name,
// aggregation temporality, ...), repeated in every chunk the message is split
// over. Data points are kept as runs of their encoded fields, sub-slices of the
// payload.
type (
	encChunk struct {
		rms    []*encRM
		points uint64
		est    int // upper bound of the chunk's encoded size
	}
	encRM struct {
		shell []byte
		sms   []*encSM
	}
	encSM struct {
		shell   []byte
		metrics []*encMetric
	}
	encMetric struct {
		shell     []byte
		hasData   bool
		dataNum   protowire.Number
		dataShell []byte
		points    [][]byte // runs of contiguous data point fields
	}
)

// encSplitter cuts an encoded MetricsData into chunks of at most max bytes at
// data point boundaries, like splitResourceMetrics does with messages, without
// decoding the data points.
type encSplitter struct {
	max    int
	chunks []*encChunk
	cur    *encChunk

	// The message path of the data point being placed, and whether it is open
	// (has a part) in cur.
	rmShell, smShell, mShell, dShell []byte
	dataNum                          protowire.Number
	hasData                          bool
	rm                               *encRM
	sm                               *encSM
	m                                *encMetric
}

// splitEncoded splits the encoded MetricsData b into chunks whose encoding is at
// most maxBytes (a single data point larger than that gets a chunk of its own).
// The chunks alias b.
func splitEncoded(b []byte, maxBytes int) ([]*encChunk, error) {
	s := &encSplitter{max: maxBytes, cur: &encChunk{}}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num == fieldResourceMetrics && typ == protowire.BytesType {
			return s.resource(v)
		}
		return nil // MetricsData has no other field
	})
	if err != nil {
		return nil, err
	}
	if len(s.cur.rms) > 0 {
		s.chunks = append(s.chunks, s.cur)
	}
	return s.chunks, nil
}

// eachField calls fn for every field of the message b with its number, type,
// value (for length-delimited fields, the contents) and whole encoding.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v, field []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return errMalformed
		}
		field := b[:n+m]
		v := field[n:]
		if typ == protowire.BytesType {
			var k int
			if v, k = protowire.ConsumeBytes(v); k < 0 {
				return errMalformed
			}
		}
		if err := fn(num, typ, v, field); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// shellOf returns the fields of message b that isChild does not select.
func shellOf(b []byte, isChild func(protowire.Number, protowire.Type) bool) ([]byte, error) {
	var shell []byte
	err := eachField(b, func(num protowire.Number, typ protowire.Type, _, field []byte) error {
		if !isChild(num, typ) {
			shell = append(shell, field...)
		}
		return nil
	})
	return shell, err
}

func (s *encSplitter) resource(b []byte) error {
	shell, err := shellOf(b, func(num protowire.Number, typ protowire.Type) bool {
		return num == fieldScopeMetrics && typ == protowire.BytesType
	})
	if err != nil {
		return err
	}
	s.rmShell, s.rm = shell, nil
	err = eachField(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num == fieldScopeMetrics && typ == protowire.BytesType {
			return s.scope(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.openRM() // keeps a resource without scopes
	s.rm = nil
	return nil
}

func (s *encSplitter) scope(b []byte) error {
	shell, err := shellOf(b, func(num protowire.Number, typ protowire.Type) bool {
		return num == fieldMetrics && typ == protowire.BytesType
	})
	if err != nil {
		return err
	}
	s.smShell, s.sm = shell, nil
	err = eachField(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num == fieldMetrics && typ == protowire.BytesType {
			return s.metric(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.openSM()
	s.sm = nil
	return nil
}

func (s *encSplitter) metric(b []byte) error {
	shell, err := shellOf(b, func(num protowire.Number, typ protowire.Type) bool {
		return isDataField(num) && typ == protowire.BytesType
	})
	if err != nil {
		return err
	}
	s.mShell, s.m, s.hasData, s.dShell = shell, nil, false, nil
	err = eachField(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if !isDataField(num) || typ != protowire.BytesType {
			return nil
		}
		dshell, err := shellOf(v, func(num protowire.Number, typ protowire.Type) bool {
			return num == fieldDataPoints && typ == protowire.BytesType
		})
		if err != nil {
			return err
		}
		s.m, s.hasData, s.dataNum, s.dShell = nil, true, num, dshell
		return eachField(v, func(num protowire.Number, typ protowire.Type, _, field []byte) error {
			if num == fieldDataPoints && typ == protowire.BytesType {
				s.point(field)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.openMetric()
	s.m = nil
	return nil
}

// point places one encoded data point field.
func (s *encSplitter) point(p []byte) {
	need := len(p)
	if s.m == nil {
		need += s.openCost()
	}
	if s.cur.points > 0 && s.cur.est+need > s.max {
		s.chunks = append(s.chunks, s.cur)
		s.cur = &encChunk{}
		s.rm, s.sm, s.m = nil, nil, nil
	}
	s.openMetric()
	m := s.m
	if n := len(m.points); n > 0 {
		if last := m.points[n-1]; cap(last)-len(last) == cap(p) { // p follows last in the payload
			m.points[n-1] = last[:len(last)+len(p)]
			s.cur.est += len(p)
			s.cur.points++
			return
		}
	}
	m.points = append(m.points, p)
	s.cur.est += len(p)
	s.cur.points++
}

// openCost is what opening the missing parts of the current path adds to a chunk.
func (s *encSplitter) openCost() int {
	n := fieldOverhead + len(s.mShell) + fieldOverhead + len(s.dShell)
	if s.sm == nil {
		n += fieldOverhead + len(s.smShell)
		if s.rm == nil {
			n += fieldOverhead + len(s.rmShell)
		}
	}
	return n
}

func (s *encSplitter) openRM() {
	if s.rm == nil {
		s.rm = &encRM{shell: s.rmShell}
		s.cur.rms = append(s.cur.rms, s.rm)
		s.cur.est += fieldOverhead + len(s.rmShell)
	}
}

func (s *encSplitter) openSM() {
	if s.sm == nil {
		s.openRM()
		s.sm = &encSM{shell: s.smShell}
		s.rm.sms = append(s.rm.sms, s.sm)
		s.cur.est += fieldOverhead + len(s.smShell)
	}
}

func (s *encSplitter) openMetric() {
	if s.m == nil {
		s.openSM()
		s.m = &encMetric{shell: s.mShell, hasData: s.hasData, dataNum: s.dataNum, dataShell: s.dShell}
		s.sm.metrics = append(s.sm.metrics, s.m)
		s.cur.est += fieldOverhead + len(s.mShell) + fieldOverhead + len(s.dShell)
	}
}

func (m *encMetric) dataSize() int {
	n := len(m.dataShell)
	for _, p := range m.points {
		n += len(p)
	}
	return n
}

func (m *encMetric) size() int {
	n := len(m.shell)
	if m.hasData {
		n += protowire.SizeTag(m.dataNum) + protowire.SizeBytes(m.dataSize())
	}
	return n
}

func (sm *encSM) size() int {
	n := len(sm.shell)
	for _, m := range sm.metrics {
		n += fieldSize(m.size())
	}
	return n
}

func (rm *encRM) size() int {
	n := len(rm.shell)
	for _, sm := range rm.sms {
		n += fieldSize(sm.size())
	}
	return n
}

func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// appendChunk appends the MetricsData encoding of c to b.
func appendChunk(b []byte, c *encChunk) []byte {
	for _, rm := range c.rms {
		b = appendLen(b, fieldResourceMetrics, rm.size())
		b = append(b, rm.shell...)
		for _, sm := range rm.sms {
			b = appendLen(b, fieldScopeMetrics, sm.size())
			b = append(b, sm.shell...)
			for _, m := range sm.metrics {
				b = appendLen(b, fieldMetrics, m.size())
				b = append(b, m.shell...)
				if m.hasData {
					b = appendLen(b, m.dataNum, m.dataSize())
					b = append(b, m.dataShell...)
					for _, p := range m.points {
						b = append(b, p...)
					}
				}
			}
		}
	}
	return b
}

// chunkParts returns the MetricsData encoding of c (what appendChunk appends) as
// parts: the framing and small runs copied into one new buffer, the large runs of
// data points aliasing the payload c was split from.
func chunkParts(c *encChunk) [][]byte {
	type piece struct {
		ext        []byte
		start, end int
	}
	var (
		frame  []byte
		pieces []piece
		mark   int
	)
	add := func(p []byte) {
		if len(p) < directWriteMin {
			frame = append(frame, p...)
			return
		}
		if len(frame) > mark {
			pieces = append(pieces, piece{start: mark, end: len(frame)})
			mark = len(frame)
		}
		pieces = append(pieces, piece{ext: p})
	}
	for _, rm := range c.rms {
		frame = appendLen(frame, fieldResourceMetrics, rm.size())
		frame = append(frame, rm.shell...)
		for _, sm := range rm.sms {
			frame = appendLen(frame, fieldScopeMetrics, sm.size())
			frame = append(frame, sm.shell...)
			for _, m := range sm.metrics {
				frame = appendLen(frame, fieldMetrics, m.size())
				frame = append(frame, m.shell...)
				if m.hasData {
					frame = appendLen(frame, m.dataNum, m.dataSize())
					frame = append(frame, m.dataShell...)
					for _, p := range m.points {
						add(p)
					}
				}
			}
		}
	}
	if len(frame) > mark {
		pieces = append(pieces, piece{start: mark, end: len(frame)})
	}
	parts := make([][]byte, len(pieces))
	for i, p := range pieces {
		if p.ext != nil {
			parts[i] = p.ext
		} else {
			parts[i] = frame[p.start:p.end:p.end]
		}
	}
	return parts
}
