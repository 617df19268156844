package mrsigner

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-garden/trellis/internal/secretsig"
)

// KeyStore holds the current signing key and verification keys. They come from
// one Secret and one ConfigMap, each watched by an informer restricted to its
// name, and are swapped atomically on every change.
type KeyStore struct {
	client                  kubernetes.Interface
	namespace, secret, cmap string
	log                     *slog.Logger
	metrics                 *metrics

	signer atomic.Pointer[secretsig.Signer]
	keys   atomic.Pointer[secretsig.KeySet]
	synced atomic.Bool

	mu       sync.Mutex
	cmKeys   []ed25519.PublicKey
	onChange []func()
}

// NewKeyStore returns a store for the named Secret (signing key) and ConfigMap
// (verification keys) in namespace; either name may be empty.
func NewKeyStore(client kubernetes.Interface, namespace, signingSecret, verificationCM string, log *slog.Logger, m *metrics) *KeyStore {
	ks := &KeyStore{client: client, namespace: namespace, secret: signingSecret, cmap: verificationCM, log: log, metrics: m}
	ks.keys.Store(secretsig.NewKeySet())
	return ks
}

// OnChange registers fn to be called after every change of the keys.
func (k *KeyStore) OnChange(fn func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onChange = append(k.onChange, fn)
}

// Signer is the current signer, nil when there is no signing key.
func (k *KeyStore) Signer() *secretsig.Signer { return k.signer.Load() }

// Keys is the current verification key set.
func (k *KeyStore) Keys() *secretsig.KeySet { return k.keys.Load() }

// Ready reports whether both informers synced and there is a key to verify with.
func (k *KeyStore) Ready(context.Context) error {
	if !k.synced.Load() {
		return errors.New("keys not loaded yet")
	}
	if k.Keys().Len() == 0 {
		return fmt.Errorf("no verification keys in secret %s/%s or configmap %s/%s", k.namespace, k.secret, k.namespace, k.cmap)
	}
	return nil
}

// Run watches the key objects until ctx ends.
func (k *KeyStore) Run(ctx context.Context) error {
	var syncs []cache.InformerSynced
	// factory returns informers restricted to the one object called name.
	factory := func(name string) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithNamespace(k.namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
	}
	watch := func(f informers.SharedInformerFactory, inf cache.SharedIndexInformer, set func(obj any)) error {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    set,
			UpdateFunc: func(_, obj any) { set(obj) },
			DeleteFunc: func(any) { set(nil) },
		}); err != nil {
			return err
		}
		f.Start(ctx.Done())
		syncs = append(syncs, inf.HasSynced)
		return nil
	}
	if k.secret != "" {
		f := factory(k.secret)
		if err := watch(f, f.Core().V1().Secrets().Informer(), func(obj any) {
			s, _ := obj.(*corev1.Secret)
			k.setSigningSecret(s)
		}); err != nil {
			return err
		}
	}
	if k.cmap != "" {
		f := factory(k.cmap)
		if err := watch(f, f.Core().V1().ConfigMaps().Informer(), func(obj any) {
			c, _ := obj.(*corev1.ConfigMap)
			k.setVerificationConfigMap(c)
		}); err != nil {
			return err
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return ctx.Err()
	}
	k.synced.Store(true)
	k.log.Info("keys loaded", "signingKey", keyIDOf(k.Signer()), "verificationKeys", k.Keys().IDs())
	<-ctx.Done()
	return nil
}

func keyIDOf(s *secretsig.Signer) string {
	if s == nil {
		return ""
	}
	return s.KeyID()
}

// setSigningSecret loads the private key from s (nil: deleted). A Secret that
// holds no usable key keeps the previous key, so a botched edit does not stop
// signing; deleting the Secret does stop it.
func (k *KeyStore) setSigningSecret(s *corev1.Secret) {
	if s == nil {
		k.signer.Store(nil)
		k.log.Warn("signing key secret deleted", "secret", k.namespace+"/"+k.secret)
		k.changed()
		return
	}
	names := make([]string, 0, len(s.Data))
	for n := range s.Data {
		names = append(names, n)
	}
	slices.Sort(names)
	var all []byte
	for _, n := range names {
		all = append(append(all, s.Data[n]...), '\n')
	}
	key, err := secretsig.ParsePrivateKeyPEM(all)
	if err != nil {
		k.metrics.keyReloads.WithLabelValues("error").Inc()
		k.log.Error("signing key unusable, keeping the previous one", "secret", k.namespace+"/"+k.secret, "err", err)
		return
	}
	k.signer.Store(secretsig.NewSigner(key))
	k.changed()
}

func (k *KeyStore) setVerificationConfigMap(c *corev1.ConfigMap) {
	var keys []ed25519.PublicKey
	if c != nil {
		names := make([]string, 0, len(c.Data))
		for n := range c.Data {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			ks, err := secretsig.ParsePublicKeysPEM([]byte(c.Data[n]))
			if err != nil {
				k.metrics.keyReloads.WithLabelValues("error").Inc()
				k.log.Error("verification keys unusable, keeping the previous ones", "configMap", k.namespace+"/"+k.cmap, "key", n, "err", err)
				return
			}
			keys = append(keys, ks...)
		}
	}
	k.mu.Lock()
	k.cmKeys = keys
	k.mu.Unlock()
	k.changed()
}

// changed rebuilds the verification set: the ConfigMap's keys plus the signing
// key's public key.
func (k *KeyStore) changed() {
	k.mu.Lock()
	keys := slices.Clone(k.cmKeys)
	signer := k.Signer()
	if signer != nil {
		keys = append(keys, signer.Public())
	}
	set := secretsig.NewKeySet(keys...)
	k.keys.Store(set)
	hooks := slices.Clone(k.onChange)
	k.mu.Unlock()
	k.metrics.keyReloads.WithLabelValues("success").Inc()
	signing := 0.0
	if signer != nil {
		signing = 1
	}
	k.metrics.keys.WithLabelValues("signing").Set(signing)
	k.metrics.keys.WithLabelValues("verification").Set(float64(set.Len()))
	if k.synced.Load() {
		k.log.Info("keys changed", "signingKey", keyIDOf(signer), "verificationKeys", set.IDs())
	}
	for _, fn := range hooks {
		fn()
	}
}
