package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElectionOptions configure Lease-based leader election for Deployments with
// more than one replica, where exactly one replica may write.
type LeaderElectionOptions struct {
	Enabled       bool
	Namespace     string
	Name          string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// PodNamespaceEnv is set from the downward API (metadata.namespace).
const PodNamespaceEnv = "POD_NAMESPACE"

// NewLeaderElectionOptions returns defaults for a daemon: the Lease is named after it.
func NewLeaderElectionOptions(daemonName string) LeaderElectionOptions {
	ns := os.Getenv(PodNamespaceEnv)
	if ns == "" {
		ns = "kube-system"
	}
	return LeaderElectionOptions{
		Enabled:   false,
		Namespace: ns,
		Name:      "trellis-" + daemonName,
		// The client-go defaults that kube-controller-manager uses.
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

func (o *LeaderElectionOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "leader-elect", o.Enabled, "Elect a leader through a Lease before doing work; required with more than one replica.")
	fs.StringVar(&o.Namespace, "leader-elect.namespace", o.Namespace, "Namespace of the leader election Lease (default $"+PodNamespaceEnv+" or kube-system).")
	fs.StringVar(&o.Name, "leader-elect.name", o.Name, "Name of the leader election Lease.")
	fs.StringVar(&o.Identity, "leader-elect.identity", "", "This replica's identity in the Lease (default: hostname plus a random suffix).")
	fs.DurationVar(&o.LeaseDuration, "leader-elect.lease-duration", o.LeaseDuration, "How long followers wait after the last renewal before taking over.")
	fs.DurationVar(&o.RenewDeadline, "leader-elect.renew-deadline", o.RenewDeadline, "How long the leader keeps retrying a renewal before it gives up leadership (and exits).")
	fs.DurationVar(&o.RetryPeriod, "leader-elect.retry-period", o.RetryPeriod, "How often candidates try to acquire or renew the Lease.")
}

func (o *LeaderElectionOptions) Complete() error {
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--leader-elect.identity: hostname: %w", err)
		}
		o.Identity = host + "_" + rand.String(8)
	}
	return nil
}

func (o *LeaderElectionOptions) Validate() error {
	if !o.Enabled {
		return nil
	}
	var errs []error
	if o.Namespace == "" || o.Name == "" {
		errs = append(errs, errors.New("--leader-elect.namespace and --leader-elect.name: required"))
	}
	if o.LeaseDuration <= o.RenewDeadline {
		errs = append(errs, fmt.Errorf("--leader-elect.lease-duration (%s) must be greater than --leader-elect.renew-deadline (%s)", o.LeaseDuration, o.RenewDeadline))
	}
	if o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod {
		errs = append(errs, fmt.Errorf("--leader-elect.renew-deadline (%s) must be greater than --leader-elect.retry-period (%s) > 0", o.RenewDeadline, o.RetryPeriod))
	}
	return errors.Join(errs...)
}

// ErrLeadershipLost ends a leader that could not renew its Lease; the process exits
// and restarts as a follower, so two writers never overlap.
var ErrLeadershipLost = errors.New("leader election lost")

// RunOrLead runs fn directly when leader election is off. Otherwise it waits to be
// elected, runs fn while leading, releases the Lease when ctx ends (so a successor
// takes over at once), and returns ErrLeadershipLost if the Lease was lost.
// onLeading, when not nil, is told when leadership starts (true) and ends (false).
func (o *LeaderElectionOptions) RunOrLead(ctx context.Context, client kubernetes.Interface, log *slog.Logger, onLeading func(bool), fn func(ctx context.Context) error) error {
	if !o.Enabled {
		return fn(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		started  bool // OnStartedLeading ran fn
		stopped  bool // Run returned; a late OnStartedLeading must not run fn
		selfDone bool // fn returned while still leading
		fnErr    error
	)
	fnDone := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if stopped {
					mu.Unlock()
					return
				}
				started = true
				mu.Unlock()
				defer close(fnDone)
				log.Info("leading", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
				if onLeading != nil {
					onLeading(true)
				}
				err := fn(lctx)
				mu.Lock()
				fnErr, selfDone = err, lctx.Err() == nil
				mu.Unlock()
				cancel() // fn ending on its own ends leadership too
			},
			OnStoppedLeading: func() {
				if onLeading != nil {
					onLeading(false)
				}
			},
			OnNewLeader: func(identity string) {
				if identity != o.Identity {
					log.Info("following", "lease", o.Namespace+"/"+o.Name, "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	log.Info("waiting for leadership", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
	elector.Run(runCtx) // returns when leadership is lost, fn ended, or ctx ended
	mu.Lock()
	stopped = true
	wasStarted := started
	mu.Unlock()
	if !wasStarted {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrLeadershipLost // acquired and lost before fn could start
	}
	<-fnDone
	switch {
	case selfDone:
		return fnErr
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return ErrLeadershipLost
}
