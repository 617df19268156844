package egressreporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/kube"
)

// apiTimeout bounds one API request.
const apiTimeout = 10 * time.Second

// Config tunes the reporter.
type Config struct {
	// HysteresisAdd and HysteresisRemove, see Tracker.
	HysteresisAdd, HysteresisRemove time.Duration
	// SyncInterval is how often the reporter re-evaluates (for the hysteresis
	// timers and probe ages) and re-applies shoot-info even without a change.
	SyncInterval time.Duration
	// RetryInterval is the first wait after a failed apply, doubling up to
	// MaxRetryInterval.
	RetryInterval, MaxRetryInterval time.Duration
}

// Reporter merges the sources and writes shoot-info.
type Reporter struct {
	shoot    kubernetes.Interface
	sources  []source
	tracker  *Tracker
	cfg      Config
	log      *slog.Logger
	m        *metrics
	recorder record.EventRecorder
	// now is the clock; tests replace it.
	now func() time.Time

	adopted  bool
	applied  string // the value this reporter last published (or found owned at start)
	dirty    bool   // the last apply failed or conflicted: apply again
	conflict string // the conflict last reported with an Event
	problems map[string]string
	trigger  chan struct{}
}

func newReporter(shoot kubernetes.Interface, sources []source, cfg Config, log *slog.Logger, m *metrics, recorder record.EventRecorder) *Reporter {
	return &Reporter{
		shoot: shoot, sources: sources, cfg: cfg, log: log, m: m, recorder: recorder,
		tracker:  NewTracker(cfg.HysteresisAdd, cfg.HysteresisRemove),
		now:      time.Now,
		problems: map[string]string{},
		trigger:  make(chan struct{}, 1),
	}
}

// Trigger asks for a sync soon (an informer saw a change); it never blocks.
func (r *Reporter) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// errNotSynced: a source has not read its state yet.
var errNotSynced = errors.New("sources not synced yet")

// Run syncs on every trigger and every SyncInterval until ctx ends; setReady
// gets each sync's outcome (nil: shoot-info is as wanted).
func (r *Reporter) Run(ctx context.Context, setReady func(error)) error {
	ticker := time.NewTicker(r.cfg.SyncInterval)
	defer ticker.Stop()
	wait := r.cfg.RetryInterval
	var retry <-chan time.Time
	resync := true
	for {
		err := r.Sync(ctx, resync)
		if ctx.Err() != nil {
			return nil
		}
		setReady(err)
		retry = nil
		switch {
		case errors.Is(err, errNotSynced):
			retry = time.After(r.cfg.RetryInterval)
		case err != nil:
			r.log.Warn("sync failed, retrying", "err", err, "retryIn", wait.String())
			retry = time.After(wait)
			wait = min(2*wait, r.cfg.MaxRetryInterval)
		default:
			wait = r.cfg.RetryInterval
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			resync = true
		case <-retry:
			resync = true
		case <-r.trigger:
			resync = false
		}
	}
}

// Sync evaluates the sources once and applies shoot-info when the published value
// changed, the last apply did not succeed, or resync is set.
func (r *Reporter) Sync(ctx context.Context, resync bool) error {
	for _, s := range r.sources {
		if !s.synced() {
			return fmt.Errorf("%w: %s", errNotSynced, s.name())
		}
	}
	now := r.now()
	if !r.adopted {
		if err := r.adopt(ctx, now); err != nil {
			return err
		}
	}
	obs := Observation{}
	for _, s := range r.sources {
		ps, problems := s.observe(now)
		r.m.candidates.WithLabelValues(s.name()).Set(float64(len(SortPrefixes(append([]netip.Prefix(nil), ps...)))))
		r.m.sourceProblems.WithLabelValues(s.name()).Add(float64(len(problems)))
		if joined := strings.Join(problems, "; "); joined != r.problems[s.name()] {
			r.problems[s.name()] = joined
			if joined != "" {
				r.log.Warn("source entries ignored", "source", s.name(), "problems", problems)
			}
		}
		if p, ok := s.(*probeSource); ok {
			r.m.probeNodes.WithLabelValues("fresh").Set(float64(p.last.fresh))
			r.m.probeNodes.WithLabelValues("stale").Set(float64(p.last.stale))
			r.m.probeNodes.WithLabelValues("invalid").Set(float64(p.last.invalid))
		}
		for _, p := range ps {
			obs.Add(p, s.declared())
		}
	}
	published, pending := r.tracker.Update(now, obs)
	r.m.pending.Set(float64(pending))
	value := FormatCIDRs(published)
	if value == r.applied && !r.dirty && (!resync || value == "") {
		// Unchanged. Without a value there is nothing to re-apply either: an
		// apply would only create an empty shoot-info where there is none.
		return nil
	}
	return r.apply(ctx, value, published)
}

// adopt reads shoot-info once at start: a value this reporter's field manager
// owns is taken as published now, so a restart (or a new leader) neither drops
// it early nor announces it again.
func (r *Reporter) adopt(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cm, err := r.shoot.CoreV1().ConfigMaps(ShootInfoNamespace).Get(ctx, ShootInfoName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r.adopted = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("read shoot-info: %w", err)
	}
	r.adopted = true
	if !ownsKey(cm, FieldManager) {
		return nil
	}
	ps, err := ParseCIDRs(cm.Data[EgressCIDRsKey])
	if err != nil {
		r.log.Warn("own egressCIDRs in shoot-info unparsable, not adopted", "err", err)
		return nil
	}
	r.tracker.Adopt(now, ps)
	r.applied = FormatCIDRs(ps)
	r.log.Info("adopted published egressCIDRs", "egressCIDRs", r.applied)
	return nil
}

// ownsKey reports whether manager owns data.egressCIDRs through apply.
func ownsKey(cm *corev1.ConfigMap, manager string) bool {
	for _, mf := range cm.ManagedFields {
		if mf.Manager != manager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Data map[string]json.RawMessage `json:"f:data"`
		}
		if json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields) == nil {
			if _, ok := fields.Data["f:"+EgressCIDRsKey]; ok {
				return true
			}
		}
	}
	return false
}

// apply writes the one key with server-side apply. Without the key in the apply,
// the reporter gives up its ownership and the API server removes the key unless
// another manager owns it too; other keys are never touched. A conflict (another
// manager owns the key with another value) is never forced: it is reported and
// retried at the next sync.
func (r *Reporter) apply(ctx context.Context, value string, published []netip.Prefix) error {
	cfg := applycorev1.ConfigMap(ShootInfoName, ShootInfoNamespace)
	if value != "" {
		cfg.WithData(map[string]string{EgressCIDRsKey: value})
	}
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cm, err := kube.Apply(actx, kube.Applier{FieldManager: FieldManager}, r.shoot.CoreV1().ConfigMaps(ShootInfoNamespace).Apply, cfg)
	if ce := kube.AsConflict(err); ce != nil {
		r.dirty = true
		r.m.applies.WithLabelValues(resultConflict).Inc()
		msg := strings.Join(ce.Conflicts, "; ")
		if msg != r.conflict {
			r.conflict = msg
			r.log.Warn("egressCIDRs owned by another field manager, not overwriting", "want", value, "conflicts", ce.Conflicts)
			r.event(nil, corev1.EventTypeWarning, ReasonConflict, fmt.Sprintf("Not writing egressCIDRs=%q: %s", value, msg))
		}
		return nil
	}
	if err != nil {
		r.dirty = true
		r.m.applies.WithLabelValues(resultError).Inc()
		return fmt.Errorf("apply shoot-info: %w", err)
	}
	r.dirty, r.conflict = false, ""
	r.m.applies.WithLabelValues(resultSuccess).Inc()
	r.m.lastApply.Set(float64(r.now().Unix()))
	v4, v6 := 0, 0
	for _, p := range published {
		if p.Addr().Is4() {
			v4++
		} else {
			v6++
		}
	}
	r.m.published.WithLabelValues("ipv4").Set(float64(v4))
	r.m.published.WithLabelValues("ipv6").Set(float64(v6))
	if value != r.applied {
		r.m.changes.Inc()
		r.log.Info("egressCIDRs changed", "from", r.applied, "to", value)
		r.event(cm, corev1.EventTypeNormal, ReasonChanged, fmt.Sprintf("egressCIDRs changed from %q to %q", r.applied, value))
		r.applied = value
	}
	return nil
}

// event records an Event on shoot-info.
func (r *Reporter) event(cm *corev1.ConfigMap, typ, reason, msg string) {
	if r.recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: ShootInfoNamespace, Name: ShootInfoName}
	if cm != nil {
		ref.UID, ref.ResourceVersion = cm.UID, cm.ResourceVersion
	}
	r.recorder.Event(ref, typ, reason, msg)
}
