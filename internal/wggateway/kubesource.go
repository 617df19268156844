package wggateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/kube"
)

const (
	// DefaultServiceSelector selects the Services that are WireGuard backends.
	DefaultServiceSelector = "trellis.dev/wg-gateway=true"
	// PublicKeyAnnotation holds a backend Service's WireGuard public key, in base64
	// as `wg pubkey` prints it.
	PublicKeyAnnotation = "trellis.dev/wireguard-public-key"
	// DefaultServicePortName names the Service's UDP port the gateway forwards to.
	DefaultServicePortName = "wireguard"
	// DefaultWireGuardPort is used when a Service has no port named PortName.
	DefaultWireGuardPort uint16 = 51820
	// ReasonInvalidBackend is the reason of the Warning Event on a Service that
	// is skipped.
	ReasonInvalidBackend = "InvalidWireGuardBackend"
)

// kubeDebounce coalesces bursts of Service changes (the initial list, a relist after
// a watch expired, a rollout touching many Services) into one recomputation. Short
// enough that a new backend is reachable well within a WireGuard handshake retry
// (5 s).
const kubeDebounce = 200 * time.Millisecond

// KubeSourceOptions configure a KubeSource. The zero value selects labelled
// Services in all namespaces.
type KubeSourceOptions struct {
	// Namespace restricts the watch to one namespace; "" watches all namespaces.
	Namespace string
	// LabelSelector selects the backend Services; "" means DefaultServiceSelector.
	LabelSelector string
	// PortName names the UDP Service port to forward to; "" means DefaultServicePortName.
	PortName string
	// DefaultPort is the port of a Service without a port named PortName; 0 means
	// DefaultWireGuardPort.
	DefaultPort uint16
	// EventRecorder, when set, receives a Warning Event for each skipped Service.
	EventRecorder record.EventRecorder
}

func (o KubeSourceOptions) withDefaults() KubeSourceOptions {
	if o.LabelSelector == "" {
		o.LabelSelector = DefaultServiceSelector
	}
	if o.PortName == "" {
		o.PortName = DefaultServicePortName
	}
	if o.DefaultPort == 0 {
		o.DefaultPort = DefaultWireGuardPort
	}
	return o
}

// KubeSource turns labelled Services into backends: the public key from the
// PublicKeyAnnotation, the address from the cluster IP (IPv4 or IPv6), the port from
// the UDP port named PortName. Invalid Services are skipped with a log line, a
// metric and an Event; they never stop the source.
type KubeSource struct {
	client   kubernetes.Interface
	opts     KubeSourceOptions
	log      *slog.Logger
	metrics  *SourceMetrics
	debounce time.Duration
	synced   atomic.Bool
}

var _ Source = (*KubeSource)(nil)

// NewKubeSource returns a source watching Services through client. log and metrics
// may be nil.
func NewKubeSource(client kubernetes.Interface, opts KubeSourceOptions, log *slog.Logger, metrics *SourceMetrics) *KubeSource {
	return &KubeSource{
		client:   client,
		opts:     opts.withDefaults(),
		log:      orDiscard(log),
		metrics:  metrics,
		debounce: kubeDebounce,
	}
}

// HasSynced reports whether the first list of Services has been handed to update;
// a readiness check.
func (s *KubeSource) HasSynced() bool { return s.synced.Load() }

// Run watches the Services until ctx ends. It returns an error only for an invalid
// label selector; list and watch failures are retried (and counted) by the
// informer. Run must be called once.
func (s *KubeSource) Run(ctx context.Context, update func([]Backend)) error {
	selector, err := labels.Parse(s.opts.LabelSelector)
	if err != nil {
		return fmt.Errorf("service label selector %q: %w", s.opts.LabelSelector, err)
	}
	s.metrics.init(sourceLabelKube)

	// No periodic resync: it only replays the cache, which the debounced
	// recomputation already reflects.
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithNamespace(s.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector.String() }))
	services := factory.Core().V1().Services()
	informer := services.Informer()

	changed := kube.NewNotifier()
	if err := changed.Watch(informer); err != nil {
		return fmt.Errorf("watch services: %w", err)
	}
	if err := informer.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
		return fmt.Errorf("watch services: %w", err)
	}

	factory.Start(ctx.Done())
	// Shutdown waits for the informer's goroutines, which end with ctx.
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil // ctx ended before the first list
	}

	st := &kubeState{
		tracker: problemTracker{source: sourceLabelKube, nameKey: "service", log: s.log, metrics: s.metrics},
	}
	// Everything up to here is in the cache: drop the notifications of the initial list.
	select {
	case <-changed.C():
	default:
	}
	s.recompute(st, services.Lister(), update)
	s.synced.Store(true)

	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed.C():
			if fire == nil {
				fire = time.After(s.debounce)
			}
		case <-fire:
			fire = nil
			s.recompute(st, services.Lister(), update)
		}
	}
}

// watchError counts and logs a failed list or watch; the informer retries with
// backoff. Expired watches and closed connections are routine and only logged at
// debug level.
func (s *KubeSource) watchError(ctx context.Context, _ *cache.Reflector, err error) {
	if ctx.Err() != nil {
		return
	}
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.log.Debug("service watch restarted", "reason", err.Error())
		return
	}
	s.metrics.failed(sourceLabelKube)
	s.log.Warn("listing or watching services failed, retrying", "err", err)
}

// kubeState is what Run's goroutine remembers between recomputations.
type kubeState struct {
	tracker problemTracker
	last    []Backend
	sent    bool
}

// recompute builds the backend list from the cache, reports new problems and calls
// update when the list differs from the last one sent.
func (s *KubeSource) recompute(st *kubeState, lister corelisters.ServiceLister, update func([]Backend)) {
	// The informer lists only selected Services; a cache lister does not fail.
	svcs, _ := lister.List(labels.Everything())
	byName := make(map[string]*corev1.Service, len(svcs))
	backends := make([]Backend, 0, len(svcs))
	problems := map[string]sourceProblem{}
	for _, svc := range svcs {
		b, p := serviceBackend(svc, s.opts.PortName, s.opts.DefaultPort)
		byName[b.Name] = svc
		if p != nil {
			problems[b.Name] = *p
			continue
		}
		backends = append(backends, b)
	}
	sortBackends(backends)
	backends = dropDuplicateKeys(backends, problems)

	for _, name := range st.tracker.set(problems) {
		s.recordEvent(byName[name], problems[name])
	}
	if st.sent && slices.Equal(st.last, backends) {
		return
	}
	st.last, st.sent = backends, true
	s.metrics.updated(sourceLabelKube)
	update(slices.Clone(backends))
}

func (s *KubeSource) recordEvent(svc *corev1.Service, p sourceProblem) {
	if s.opts.EventRecorder == nil || svc == nil {
		return
	}
	s.opts.EventRecorder.Event(svc, corev1.EventTypeWarning, ReasonInvalidBackend,
		"Not used as a WireGuard backend ("+string(p.reason)+"): "+p.detail)
}

// serviceBackend converts one Service. The Backend's Name is always set, also when
// the Service is skipped and the problem is returned.
func serviceBackend(svc *corev1.Service, portName string, defaultPort uint16) (Backend, *sourceProblem) {
	b := Backend{Name: svc.Namespace + "/" + svc.Name}
	raw, ok := svc.Annotations[PublicKeyAnnotation]
	if !ok || strings.TrimSpace(raw) == "" {
		return b, &sourceProblem{skipMissingKey, "annotation " + PublicKeyAnnotation + " is missing or empty"}
	}
	key, err := parsePublicKey(raw)
	if err != nil {
		return b, &sourceProblem{skipInvalidKey, "annotation " + PublicKeyAnnotation + ": " + err.Error()}
	}
	addr, p := serviceAddress(svc)
	if p != nil {
		return b, p
	}
	port, p := servicePort(svc, portName, defaultPort)
	if p != nil {
		return b, p
	}
	b.PublicKey = key
	b.Endpoint = netip.AddrPortFrom(addr, port)
	return b, nil
}

// serviceAddress is the Service's primary cluster IP (IPv4 or IPv6).
func serviceAddress(svc *corev1.Service) (netip.Addr, *sourceProblem) {
	ip := svc.Spec.ClusterIP
	if len(svc.Spec.ClusterIPs) > 0 {
		ip = svc.Spec.ClusterIPs[0]
	}
	switch {
	case ip == corev1.ClusterIPNone:
		return netip.Addr{}, &sourceProblem{skipNoAddress, "headless Service (clusterIP None) has no address to forward to"}
	case ip == "":
		return netip.Addr{}, &sourceProblem{skipNoAddress, "Service of type " + string(svc.Spec.Type) + " has no cluster IP"}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" || addr.Unmap().IsUnspecified() {
		return netip.Addr{}, &sourceProblem{skipNoAddress, fmt.Sprintf("cluster IP %q is not a usable IP address", ip)}
	}
	return addr.Unmap(), nil
}

// servicePort is the port of the UDP port named portName, or defaultPort when the
// Service has no port of that name.
func servicePort(svc *corev1.Service, portName string, defaultPort uint16) (uint16, *sourceProblem) {
	for _, p := range svc.Spec.Ports {
		if p.Name != portName {
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP // the API server's default
		}
		if proto != corev1.ProtocolUDP {
			return 0, &sourceProblem{skipInvalidPort, fmt.Sprintf("port %q is %s, WireGuard needs UDP", portName, proto)}
		}
		if p.Port < 1 || p.Port > 65535 {
			return 0, &sourceProblem{skipInvalidPort, fmt.Sprintf("port %q has number %d, want 1-65535", portName, p.Port)}
		}
		return uint16(p.Port), nil
	}
	return defaultPort, nil
}
