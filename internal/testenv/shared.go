package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	sharedMu  sync.Mutex
	shared    *Env
	sharedErr error
)

// Main runs a package's tests and stops the shared environment afterwards. Use it
// as TestMain's body: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", err)
		}
		shared = nil
	}
	return code
}

// Get returns the package's shared environment, starting it on first use. Without
// the binaries the test is skipped with a message saying how to build them, or
// fails when the environment is required (CI=true, or TRELLIS_TESTENV_REQUIRED=true
// as `make test` sets): a test that needs an API server never passes silently.
func Get(t testing.TB) *Env {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared, sharedErr = Start(ctx, AssetsDir())
		cancel()
	}
	if sharedErr != nil {
		if Required() || !strings.Contains(sharedErr.Error(), "not built") {
			t.Fatalf("real kube-apiserver unavailable: %v", sharedErr)
		}
		t.Skipf("real kube-apiserver unavailable (run `make testenv`, or `make test` which builds it): %v", sharedErr)
	}
	return shared
}

// Namespace creates a namespace for one test (named after it, with a random
// suffix) so tests sharing an API server never see each other's objects.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + randomHex(3)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}
