package egressreporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/egressprobe"
	"github.com/trellis-garden/trellis/internal/kube"
)

// nodeProber is the probe subcommand's loop: probe every family, then write the
// addresses found to the Node's annotations when they changed or the last write
// is older than refresh.
type nodeProber struct {
	client   kubernetes.Interface
	node     string
	prober   *egressprobe.Prober
	families []egressprobe.Family
	interval time.Duration
	refresh  time.Duration
	log      *slog.Logger
	m        *probeMetrics
	now      func() time.Time

	written   string // annotation value last written
	writtenAt time.Time
	reported  map[egressprobe.Family]netip.Addr
}

func newNodeProber(client kubernetes.Interface, o *ProbeOptions, log *slog.Logger, m *probeMetrics) *nodeProber {
	p := &nodeProber{
		client: client, node: o.Node.Name, families: o.families,
		interval: o.Interval, refresh: o.Refresh, log: log, m: m, now: time.Now,
		reported: map[egressprobe.Family]netip.Addr{},
	}
	p.prober = &egressprobe.Prober{
		STUNServers: o.STUNServers, HTTPURLs: o.HTTPURLs, Timeout: o.Timeout,
		OnAttempt: func(family egressprobe.Family, method, server string, err *egressprobe.Error) {
			result := "success"
			if err != nil {
				result = err.Kind
				log.Debug("probe attempt failed", "family", string(family), "method", method, "server", server, "kind", err.Kind, "err", err.Err)
			}
			m.attempts.WithLabelValues(string(family), method, server, result).Inc()
		},
	}
	return p
}

// Run probes every interval until ctx ends; after a failed round it retries
// sooner, with backoff from 1 s up to the interval. setReady gets each round's
// outcome.
func (p *nodeProber) Run(ctx context.Context, setReady func(error)) error {
	wait := time.Second
	for {
		err := p.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		setReady(err)
		next := p.interval
		if err != nil {
			p.log.Warn("probe round failed", "err", err, "retryIn", wait.String())
			next, wait = wait, min(2*wait, p.interval)
		} else {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// round probes once and writes the Node when needed. Families that fail are
// left out of the annotation (the reporter's hysteresis keeps their last
// address published for a while); a round that finds nothing writes nothing, so
// the annotation ages and expires at the reporter.
func (p *nodeProber) round(ctx context.Context) error {
	var addrs []string
	var errs []error
	now := p.now()
	for _, f := range p.families {
		r, err := p.prober.Probe(ctx, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		p.m.lastOK.WithLabelValues(string(f)).Set(float64(now.Unix()))
		if old, ok := p.reported[f]; !ok || old != r.Address {
			if ok {
				p.m.addresses.DeleteLabelValues(string(f), old.String())
			}
			p.m.addresses.WithLabelValues(string(f), r.Address.String()).Set(1)
			p.reported[f] = r.Address
			p.log.Info("egress address found", "family", string(f), "address", r.Address.String(), "method", r.Method, "server", r.Server)
		}
		addrs = append(addrs, r.Address.String())
	}
	if len(addrs) == 0 {
		return fmt.Errorf("no egress address found: %w", errors.Join(errs...))
	}
	if len(errs) > 0 {
		p.log.Warn("some families not probed", "err", errors.Join(errs...))
	}
	value := strings.Join(addrs, ",")
	if value == p.written && now.Sub(p.writtenAt) < p.refresh {
		return nil
	}
	if err := p.write(ctx, value, now); err != nil {
		p.m.writes.WithLabelValues("error").Inc()
		return err
	}
	p.m.writes.WithLabelValues("success").Inc()
	if value != p.written {
		p.m.changes.Inc()
	}
	p.written, p.writtenAt = value, now
	return nil
}

// write applies the two annotations on the Node with the probe's own field
// manager; nothing else of the Node is sent, so nothing else is owned. Force:
// the keys are the probe's by definition (a hand-made `kubectl annotate` of them
// must not block it). A missing Node is not created (no RBAC create).
func (p *nodeProber) write(ctx context.Context, value string, at time.Time) error {
	cfg := applycorev1.Node(p.node).WithAnnotations(map[string]string{
		AddressAnnotation:    value,
		ObservedAtAnnotation: at.UTC().Format(time.RFC3339),
	})
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := kube.Apply(ctx, kube.Applier{FieldManager: ProbeFieldManager, Force: true}, p.client.CoreV1().Nodes().Apply, cfg); err != nil {
		return fmt.Errorf("annotate node %s: %w", p.node, err)
	}
	return nil
}
