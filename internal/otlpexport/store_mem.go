package otlpexport

// memStore keeps records on the heap: bounded like the disk queue, lost on restart.
type memStore struct{}

func (memStore) append(buf []byte, ents []entry) error {
	var off int64
	for i := range ents {
		e := &ents[i]
		e.payload = buf[off+recordHeaderSize : off+e.size : off+e.size]
		off += e.size
	}
	return nil
}

func (memStore) readPayload(dst []byte, e *entry) ([]byte, error) {
	return append(dst, e.payload...), nil
}

func (memStore) consumed(_, _ *entry) error { return nil }

func (memStore) close() error { return nil }
