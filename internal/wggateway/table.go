package wggateway

import (
	"sync/atomic"

	"github.com/trellis-garden/trellis/internal/wgproto"
)

// backendState is a backend as the data path sees it. It survives table updates
// that leave the backend unchanged, so its sessions and counters carry on.
type backendState struct {
	Backend
	// idx is the backend's position in the current table's router; a hint for
	// routing a client's next initiation. Written at table swaps.
	idx atomic.Int32
	// removed is set when a table update drops the backend (or changes its
	// endpoint); its sessions end at their next packet or sweep.
	removed atomic.Bool
	// handshakes counts initiations forwarded to the backend (atomic: written by
	// every shard).
	handshakes atomic.Uint64
	// pressureUntil is the unix nanos until which initiations for the backend
	// need a valid gateway mac2 (see pressure.go).
	pressureUntil atomic.Int64
	// sealer writes the gateway's cookie replies on the backend's behalf and
	// reads the backend's own.
	sealer *wgproto.CookieSealer
	// cookiesSent counts the gateway's cookie replies for the backend; cookiesTaken
	// the backend's own cookie replies the gateway used for its mac2; refused the
	// new clients refused because the backend's slots were full.
	cookiesSent, cookiesTaken, refused atomic.Uint64
	// refusalLogged is the unix nanos of the last log line about a refusal.
	refusalLogged atomic.Int64
}

// table is an immutable routing table.
type table struct {
	backends []*backendState
	router   *wgproto.Router
}

func newTable(backends []Backend, previous *table) *table {
	old := map[Backend]*backendState{}
	if previous != nil {
		for _, b := range previous.backends {
			old[b.Backend] = b
		}
	}
	t := &table{backends: make([]*backendState, 0, len(backends))}
	keys := make([][32]byte, 0, len(backends))
	for _, b := range backends {
		st := old[b]
		if st == nil {
			st = &backendState{Backend: b, sealer: wgproto.NewCookieSealer(b.PublicKey)}
		}
		delete(old, b)
		st.idx.Store(int32(len(t.backends)))
		t.backends = append(t.backends, st)
		keys = append(keys, b.PublicKey)
	}
	for _, gone := range old {
		gone.removed.Store(true)
	}
	t.router = wgproto.NewRouter(keys)
	return t
}

// route returns the backend whose public key validates the initiation's mac1.
func (t *table) route(msg []byte, hint *backendState) *backendState {
	h := -1
	if hint != nil && !hint.removed.Load() {
		h = int(hint.idx.Load())
	}
	i := t.router.Match(msg, h)
	if i < 0 {
		return nil
	}
	return t.backends[i]
}
