// Package wggateway is wg-gateway: one UDP port in front of many WireGuard servers,
// routing each client to the server whose public key its handshake names. It holds
// no private keys: an initiation's mac1 is keyed with the responder's PUBLIC key,
// so checking it against each backend's key names the backend.
package wggateway

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
)

// NewCommand builds the wg-gateway command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "One UDP port in front of many WireGuard servers, routed by public key",
		Long: `wg-gateway relays WireGuard traffic arriving on one UDP port to many WireGuard
servers (one per shoot control plane). It routes a client's handshake to the server
whose public key validates the handshake's mac1, so it needs only public keys, and
relays responses, cookie replies and data by session. Backends come from labelled
Services (or a YAML file) and change without a restart.`,
		ListenAddress: ":8080",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o) },
	})
}

func run(ctx context.Context, d *daemon.Daemon, o *Options) error {
	gw, err := New(o.Gateway, d.Logger)
	if err != nil {
		return err
	}
	d.Registry.MustRegister(gw.Collector(d.Namespace))
	metrics := NewSourceMetrics(d.Registry, d.Namespace)

	var src Source
	switch o.Source {
	case "file":
		src = NewFileSource(o.File, o.FileInterval, d.Logger, metrics)
	default:
		client, _, err := o.Kube.Clientset(Name)
		if err != nil {
			return err
		}
		recorder, stopEvents := kube.NewEventRecorder(client, Name)
		defer stopEvents()
		ks := NewKubeSource(client, KubeSourceOptions{
			Namespace:     o.Namespace,
			LabelSelector: o.LabelSelector,
			PortName:      o.PortName,
			DefaultPort:   o.DefaultPort,
			EventRecorder: recorder,
		}, d.Logger, metrics)
		src = ks
	}

	if err := gw.Listen(ctx); err != nil {
		return err
	}
	d.Logger.Info("listening", "address", gw.LocalAddr().String(), "shards", gw.Shards())
	synced := daemon.NewGate()
	synced.Set(fmt.Errorf("backends from %s not loaded yet", o.Source))
	d.Ready.Add("backends", synced.Check)

	d.Go("backends", func(ctx context.Context) error {
		return src.Run(ctx, func(bs []Backend) {
			gw.SetBackends(bs)
			synced.Set(nil)
			d.Logger.Info("backends updated", "count", len(bs))
		})
	})
	return gw.Serve(ctx)
}
