package mrsigner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/webhook"
)

// NewCommand builds the mr-signer command with its sign and verify subcommands.
func NewCommand() *cobra.Command {
	o := NewOptions()
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "Sign ManagedResource Secrets written by trusted identities; quarantine tampered ManagedResources",
		Long: `mr-signer protects Gardener ManagedResources: the resource manager applies whatever
their Secrets hold, with broad permissions. A mutating admission webhook signs every
write of such a Secret by a trusted identity (Ed25519 over namespace, name, type and
data, annotation trellis.dev/signature) and strips the signature from anyone else's
writes; a leader-elected controller verifies the Secrets of every ManagedResource and
quarantines it (resources.gardener.cloud/ignore=true) while a signature is missing or
invalid. The sign and verify subcommands do the same offline on YAML files.`,
		ListenAddress: ":8080",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o) },
		Commands:      cliCommands(),
	})
}

func run(ctx context.Context, d *daemon.Daemon, o *Options) error {
	client, cfg, err := o.Kube.Clientset(Name)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build dynamic client: %w", err)
	}
	m := newMetrics(d.Namespace)
	d.Registry.MustRegister(m.collectors()...)

	keys := NewKeyStore(client, o.KeysNamespace, o.SigningSecret, o.VerificationCM, d.Logger, m)
	d.Ready.Add("keys", keys.Ready)
	d.Go("keys", keys.Run)

	mrs := newManagedResourceInformer(dyn, o.WatchNamespace, o.ResyncPeriod)
	d.Go("managedresources", func(ctx context.Context) error { mrs.Run(ctx.Done()); return nil })
	d.Registry.MustRegister(quarantinedGauge(d.Namespace, func() int { return countQuarantined(mrs) }))
	d.Ready.Add("managedresources", func(context.Context) error {
		if !mrs.HasSynced() {
			return errors.New("managedresources cache not synced")
		}
		return nil
	})

	// Leader-only work: the verifier and the bootstrap.
	var leaderWork []func(context.Context) error
	if o.EnableVerifier {
		recorder, stop := kube.NewEventRecorder(client, Name)
		defer stop()
		v := &Verifier{Client: client, Dynamic: dyn, ManagedRes: mrs, Keys: keys, Recorder: recorder, Log: d.Logger,
			Namespace: o.WatchNamespace, SecretSelector: o.SecretsSelector, Resync: o.ResyncPeriod, metrics: m}
		if err := v.init(); err != nil {
			return err
		}
		leaderWork = append(leaderWork, v.Run)
	}
	if o.BootstrapKeys || o.BootstrapCerts || len(o.BootstrapWebhookConfigs) > 0 {
		// The trust matchConditions are kept whenever webhook configurations are
		// named, also without certificate bootstrap (cert-manager writes the caBundle).
		b := &Bootstrapper{Client: client, Namespace: o.KeysNamespace, Certificates: o.BootstrapCerts, TrustConditions: o.trust.TrustConditions(),
			CASecret: o.BootstrapCASecret, TLSSecret: o.TLSSecret, Service: o.BootstrapService, WebhookConfigs: o.BootstrapWebhookConfigs, ExtraNames: o.BootstrapExtraNames,
			CertValidity: o.BootstrapCertValidity, CAValidity: o.BootstrapCAValidity, Period: o.BootstrapPeriod, Log: d.Logger, metrics: m}
		if o.BootstrapKeys {
			b.SigningSecret, b.VerificationCM = o.SigningSecret, o.VerificationCM
		}
		leaderWork = append(leaderWork, b.Run)
	}
	if len(leaderWork) > 0 {
		d.Go("leader", func(ctx context.Context) error {
			return o.LeaderElection.RunOrLead(ctx, client, d.Logger, func(leading bool) {
				if leading {
					m.leader.Set(1)
				} else {
					m.leader.Set(0)
					m.certExpiry.DeleteLabelValues(certCA) // the next leader reports it
				}
			}, func(ctx context.Context) error { return runAll(ctx, leaderWork) })
		})
	}

	if o.WebhookAddress != "" {
		var tlsConfig *tls.Config
		if o.TLSSecret != "" {
			store := &webhook.CertStore{}
			d.Go("serving-certificate", func(ctx context.Context) error {
				return watchServingSecret(ctx, client, o.KeysNamespace, o.TLSSecret, store, d.Logger, m)
			})
			d.Ready.Add("serving-certificate", func(context.Context) error { return store.Ready() })
			tlsConfig = store.TLSConfig()
		} else {
			certs, err := webhook.NewCertReloader(o.CertFile, o.KeyFile)
			if err != nil {
				return err
			}
			// The reloader parsed the pair from these files just now; the expiry is read from the same file.
			setServingExpiry := func() {
				if b, err := os.ReadFile(o.CertFile); err == nil {
					m.setCertExpiry(certServing, b)
				}
			}
			setServingExpiry()
			certs.OnReload = func(err error) {
				if err != nil {
					d.Logger.Error("serving certificate reload failed, keeping the previous one", "err", err)
					return
				}
				setServingExpiry()
				d.Logger.Info("serving certificate reloaded", "certFile", o.CertFile)
			}
			tlsConfig = certs.TLSConfig()
		}
		a := &Admitter{Keys: keys, Trust: o.trust, Selectors: o.selectors, Refs: mrReferences{mrs}, DenyUntrusted: o.DenyUntrusted, Log: d.Logger, metrics: m}
		ln, err := net.Listen("tcp", o.WebhookAddress)
		if err != nil {
			return fmt.Errorf("listen on --webhook.listen-address: %w", err)
		}
		// TLS handshake failures (e.g. an API server with a stale caBundle) are worth a warning.
		srv := &http.Server{Handler: a.Handler(), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn)}
		d.Logger.Info("serving admission webhooks", "address", ln.Addr().String())
		d.Go("webhook", func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("webhook server: %w", err)
			}
			return nil
		})
	}
	<-ctx.Done()
	return nil
}

// runAll runs every fn until ctx ends or one fails; the first error ends the others.
func runAll(ctx context.Context, fns []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errs <- fn(ctx) }()
	}
	var first error
	for range fns {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
