package wggateway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DefaultFilePollInterval is how often a FileSource checks its file: often enough
// that a ConfigMap update (itself delayed by the kubelet's sync, up to a minute)
// is picked up promptly, rare enough that reading a small file costs nothing.
const DefaultFilePollInterval = 2 * time.Second

// fileResolveTimeout bounds the lookup of one host name in the file.
const fileResolveTimeout = 5 * time.Second

// maxBackendNameLen keeps names usable in logs and labels.
const maxBackendNameLen = 253

// FileSource reads backends from a YAML file, for use outside Kubernetes:
//
//	backends:
//	  - name: shoot-a
//	    publicKey: <base64, as `wg pubkey` prints it>
//	    endpoint: 10.0.0.5:51820         # or "[fd00::5]:51820" (quoted: [ starts a YAML list)
//	  - name: shoot-b
//	    publicKey: <base64>
//	    endpoint: vpn.shoot-b.example:51820  # resolved when loaded, and again at every poll
//
// The file is read every interval and reloaded when its content changes (so a
// ConfigMap volume's symlink swap is seen; no inotify); write it atomically
// (rename). Unknown fields are errors. An invalid entry is skipped while the others
// apply; an unreadable, empty or invalid file keeps the last good list.
type FileSource struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	metrics  *SourceMetrics
	resolver hostResolver
	synced   atomic.Bool
}

var _ Source = (*FileSource)(nil)

// hostResolver looks up host names in the file; *net.Resolver implements it.
type hostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// NewFileSource returns a source reading path every interval (<= 0 means
// DefaultFilePollInterval). log and metrics may be nil.
func NewFileSource(path string, interval time.Duration, log *slog.Logger, metrics *SourceMetrics) *FileSource {
	if interval <= 0 {
		interval = DefaultFilePollInterval
	}
	return &FileSource{
		path:     path,
		interval: interval,
		log:      orDiscard(log),
		metrics:  metrics,
		resolver: net.DefaultResolver,
	}
}

// HasSynced reports whether the file has been loaded and its list handed to update.
func (s *FileSource) HasSynced() bool { return s.synced.Load() }

// Run loads the file, then polls it until ctx ends. It returns an error when the
// first load fails (unreadable file or invalid YAML), so a daemon started with a
// bad file fails at once; later failures keep the last good list.
func (s *FileSource) Run(ctx context.Context, update func([]Backend)) error {
	s.metrics.init(sourceLabelFile)
	st := &fileState{
		tracker: problemTracker{source: sourceLabelFile, nameKey: "backend", log: s.log, metrics: s.metrics},
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.metrics.failed(sourceLabelFile)
		return fmt.Errorf("read backends file: %w", err)
	}
	entries, err := parseBackendsFile(data)
	if err != nil {
		s.metrics.failed(sourceLabelFile)
		return fmt.Errorf("backends file %s: %w", s.path, err)
	}
	st.hash = sha256.Sum256(data)
	st.entries = entries
	s.log.Info("backends file loaded", "path", s.path, "entries", len(entries))
	s.apply(ctx, st, update)
	s.synced.Store(true)

	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			s.poll(ctx, st, update)
		}
	}
}

// fileState is what Run's goroutine remembers between polls.
type fileState struct {
	tracker problemTracker
	// hash is of the content parsed last, good or bad, so a bad file is reported once.
	hash [32]byte
	// entries are from the last good content.
	entries []fileEntry
	// readErr is the last read failure reported, so it is reported once.
	readErr string
	last    []Backend
	sent    bool
}

func (s *FileSource) poll(ctx context.Context, st *fileState, update func([]Backend)) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		if err.Error() != st.readErr {
			st.readErr = err.Error()
			s.metrics.failed(sourceLabelFile)
			s.log.Warn("backends file unreadable, keeping the last good list", "path", s.path, "err", err)
		}
		return
	}
	if st.readErr != "" {
		st.readErr = ""
		s.log.Info("backends file readable again", "path", s.path)
	}
	hash := sha256.Sum256(data)
	if hash == st.hash {
		if hasHostNames(st.entries) {
			s.apply(ctx, st, update) // names may resolve differently now
		}
		return
	}
	st.hash = hash
	entries, err := parseBackendsFile(data)
	if err != nil {
		s.metrics.failed(sourceLabelFile)
		s.log.Warn("backends file invalid, keeping the last good list", "path", s.path, "err", err)
		return
	}
	st.entries = entries
	s.log.Info("backends file loaded", "path", s.path, "entries", len(entries))
	s.apply(ctx, st, update)
}

// apply turns the entries into backends, reports problems and calls update when the
// list changed.
func (s *FileSource) apply(ctx context.Context, st *fileState, update func([]Backend)) {
	previous := make(map[string]netip.AddrPort, len(st.last))
	for _, b := range st.last {
		previous[b.Name] = b.Endpoint
	}
	backends := make([]Backend, 0, len(st.entries))
	problems := map[string]sourceProblem{}
	for _, e := range st.entries {
		if e.problem != nil {
			problems[e.name] = *e.problem
			continue
		}
		ep, p := s.endpoint(ctx, e, previous[e.name])
		if p != nil {
			problems[e.name] = *p
			continue
		}
		backends = append(backends, Backend{Name: e.name, PublicKey: e.key, Endpoint: ep})
	}
	sortBackends(backends)
	backends = dropDuplicateKeys(backends, problems)
	st.tracker.set(problems)
	if st.sent && slices.Equal(st.last, backends) {
		return
	}
	st.last, st.sent = backends, true
	s.metrics.updated(sourceLabelFile)
	update(slices.Clone(backends))
}

// endpoint returns the entry's address, resolving a host name. Of several addresses
// the previous one is kept while it is still among them (no churn with round-robin
// DNS), else the lowest; a failed lookup keeps the previous address, so a DNS
// hiccup does not end the backend's sessions.
func (s *FileSource) endpoint(ctx context.Context, e fileEntry, previous netip.AddrPort) (netip.AddrPort, *sourceProblem) {
	if e.host == "" {
		return e.addrPort, nil
	}
	lookupCtx, cancel := context.WithTimeout(ctx, fileResolveTimeout)
	defer cancel()
	addrs, err := s.resolver.LookupNetIP(lookupCtx, "ip", e.host)
	usable := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a = a.Unmap(); a.IsValid() && !a.IsUnspecified() {
			usable = append(usable, a)
		}
	}
	if err == nil && len(usable) == 0 {
		err = errors.New("no usable address")
	}
	if err != nil {
		if previous.IsValid() {
			s.log.Debug("resolving backend host failed, keeping its address", "backend", e.name, "host", e.host, "err", err)
			return previous, nil
		}
		return netip.AddrPort{}, &sourceProblem{skipNoAddress, fmt.Sprintf("resolve host %q: %v", e.host, err)}
	}
	if previous.IsValid() && previous.Port() == e.port && slices.Contains(usable, previous.Addr()) {
		return previous, nil
	}
	slices.SortFunc(usable, netip.Addr.Compare)
	return netip.AddrPortFrom(usable[0], e.port), nil
}

func hasHostNames(entries []fileEntry) bool {
	return slices.ContainsFunc(entries, func(e fileEntry) bool { return e.problem == nil && e.host != "" })
}

// backendsFile is the file's top level; entries are decoded one by one, so one bad
// entry does not reject the others.
type backendsFile struct {
	Backends []json.RawMessage `json:"backends"`
}

// fileEntryFields are the fields of one entry.
type fileEntryFields struct {
	Name      string `json:"name"`
	PublicKey string `json:"publicKey"`
	Endpoint  string `json:"endpoint"`
}

// fileEntry is one parsed entry: valid (problem nil) with a key and either an
// address or a host name to resolve, or skipped with a problem.
type fileEntry struct {
	// name is the entry's name, or "backends[i]" for an entry without a usable name.
	name     string
	key      [32]byte
	addrPort netip.AddrPort // when the endpoint is an IP address
	host     string         // when the endpoint is a host name
	port     uint16
	problem  *sourceProblem
}

// parseBackendsFile parses the file strictly: invalid YAML, duplicate keys and
// unknown or wrongly cased fields at the top level are errors; the same in an entry
// skips only that entry. Nothing is resolved here.
func parseBackendsFile(data []byte) ([]fileEntry, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if string(j) == "null" {
		// Most likely a file caught while being written; an empty list is said
		// explicitly.
		return nil, errors.New("file is empty (for no backends write `backends: []`)")
	}
	var doc backendsFile
	if err := strictJSON(j, &doc); err != nil {
		return nil, err
	}
	entries := make([]fileEntry, 0, len(doc.Backends))
	firstIndex := map[string]int{}
	for i, raw := range doc.Backends {
		e := parseFileEntry(i, raw)
		if e.problem == nil {
			if first, dup := firstIndex[e.name]; dup {
				e.problem = &sourceProblem{skipInvalidEntry, fmt.Sprintf("name %q already used by backends[%d]", e.name, first)}
				e.name = entryIndexName(i)
			} else {
				firstIndex[e.name] = i
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func entryIndexName(i int) string { return "backends[" + strconv.Itoa(i) + "]" }

// parseFileEntry parses the i-th entry. Problems name the entry by its name when it
// has a valid one, else by its index.
func parseFileEntry(i int, raw json.RawMessage) fileEntry {
	var f fileEntryFields
	if string(raw) == "null" {
		return fileEntry{name: entryIndexName(i), problem: &sourceProblem{skipInvalidEntry, "entry is empty"}}
	}
	if err := strictJSON(raw, &f); err != nil {
		return fileEntry{name: entryIndexName(i), problem: &sourceProblem{skipInvalidEntry, err.Error()}}
	}
	if err := validBackendName(f.Name); err != nil {
		return fileEntry{name: entryIndexName(i), problem: &sourceProblem{skipInvalidEntry, err.Error()}}
	}
	e := fileEntry{name: f.Name}
	if strings.TrimSpace(f.PublicKey) == "" {
		e.problem = &sourceProblem{skipMissingKey, "publicKey is missing"}
		return e
	}
	key, err := parsePublicKey(f.PublicKey)
	if err != nil {
		e.problem = &sourceProblem{skipInvalidKey, err.Error()}
		return e
	}
	e.key = key
	e.addrPort, e.host, e.port, e.problem = parseEndpoint(f.Endpoint)
	return e
}

func validBackendName(name string) error {
	switch {
	case name == "":
		return errors.New("name is missing")
	case len(name) > maxBackendNameLen:
		return fmt.Errorf("name is longer than %d bytes", maxBackendNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }):
		return fmt.Errorf("name %q contains spaces or unprintable characters", name)
	}
	return nil
}

// parseEndpoint parses "ip:port", "[ipv6]:port" or "host:port". For a host name the
// address is left to resolve.
func parseEndpoint(s string) (addrPort netip.AddrPort, host string, port uint16, p *sourceProblem) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.AddrPort{}, "", 0, &sourceProblem{skipNoAddress, "endpoint is missing"}
	}
	h, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, "", 0, &sourceProblem{skipNoAddress, fmt.Sprintf("endpoint %q is not host:port (IPv6 as [addr]:port)", s)}
	}
	n, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, "", 0, &sourceProblem{skipInvalidPort, fmt.Sprintf("endpoint %q: port must be 1-65535", s)}
	}
	port = uint16(n)
	if h == "" {
		return netip.AddrPort{}, "", 0, &sourceProblem{skipNoAddress, fmt.Sprintf("endpoint %q has no host", s)}
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		addr = addr.Unmap()
		if addr.IsUnspecified() {
			return netip.AddrPort{}, "", 0, &sourceProblem{skipNoAddress, fmt.Sprintf("endpoint %q: unspecified address", s)}
		}
		return netip.AddrPortFrom(addr, port), "", port, nil
	}
	if strings.ContainsAny(h, ":%[]/ ") {
		return netip.AddrPort{}, "", 0, &sourceProblem{skipNoAddress, fmt.Sprintf("endpoint %q: %q is neither an IP address nor a host name", s, h)}
	}
	return netip.AddrPort{}, h, port, nil
}

// strictJSON decodes case-sensitively and rejects unknown and duplicate fields.
func strictJSON(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}
