package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// proveSeed applies the seed overlay (three replicas each) and checks that
// each leader-elected daemon has exactly one Lease holder among its pods.
func proveSeed(ctx context.Context, t *testing.T, tag string) {
	applyOverlay(ctx, t, "seed", tag)
	waitWorkloadsReady(ctx, t, 4*time.Minute)
	cs := env.cl.Client
	// Right after a rollout the old leader may have released its Lease and no
	// new pod taken it yet (seen in a run): wait until each Lease is held by a
	// pod that runs now.
	for _, ns := range []string{"trellis-mr-signer", "default"} {
		var held []string
		err := poll(ctx, 90*time.Second, func() error {
			held = held[:0]
			leases, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(leases.Items) == 0 {
				return fmt.Errorf("no Lease in %s", ns)
			}
			for _, l := range leases.Items {
				if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
					return fmt.Errorf("Lease %s/%s has no holder", ns, l.Name)
				}
				pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
				p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
				if err != nil || p.DeletionTimestamp != nil {
					return fmt.Errorf("Lease %s/%s held by %s, not a running pod (%v)", ns, l.Name, *l.Spec.HolderIdentity, err)
				}
				held = append(held, fmt.Sprintf("Lease %s/%s held by %s", ns, l.Name, *l.Spec.HolderIdentity))
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			continue
		}
		for _, h := range held {
			t.Log(h)
		}
	}
}

// proveWebhookAvailability: while the seed's mr-signer Deployment (three
// replicas, the ha budget) rolls to a new image, gardenlet keeps writing MR
// Secrets as it does (retrying a refused write); every write ends signed within
// 15 s, and none is stored unsigned. Refused attempts are reported.
func proveWebhookAvailability(ctx context.Context, t *testing.T, tag string) {
	gcfg := rest.CopyConfig(env.cl.REST)
	gcfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:garden:gardenlet"}
	gardenlet, err := kubernetes.NewForConfig(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := "shoot--e2e--local"
	var writes, refused, unsigned, lost atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			name := fmt.Sprintf("mr-roll-%d", i)
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"trellis.dev/managed-resource-secret": "true"}},
				Data:       map[string][]byte{"objects.yaml": []byte("kind: ConfigMap\n")},
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				got, err := gardenlet.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
				if err == nil {
					writes.Add(1)
					if !strings.HasPrefix(got.Annotations["trellis.dev/signature"], "v1.") {
						unsigned.Add(1)
					}
					_ = gardenlet.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
					break
				}
				refused.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				if time.Now().After(deadline) || ctx.Err() != nil {
					lost.Add(1)
					break
				}
				time.Sleep(200 * time.Millisecond) // sleep-ok: a client's pause before it retries a refused write (the rollout under test decides when writes succeed)
			}
		}
	}()
	applyOverlay(ctx, t, "seed", tag)
	waitWorkloadsReady(ctx, t, 4*time.Minute)
	close(stop)
	wg.Wait()
	t.Logf("during the rollout: %d writes signed, %d attempts refused (first: %v), %d unsigned, %d not written within 15 s",
		writes.Load(), refused.Load(), firstErr.Load(), unsigned.Load(), lost.Load())
	if writes.Load() == 0 || unsigned.Load() != 0 || lost.Load() != 0 {
		t.Fatal("the webhook was not available through the rolling update")
	}
}
