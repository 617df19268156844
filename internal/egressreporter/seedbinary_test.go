package egressreporter

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// installRBAC creates the RBAC objects of a deploy folder for real; namespaced
// ones go to ns (as kustomize's namespace transformer would put them).
func installRBAC(t *testing.T, env *testenv.Env, dir, ns string) {
	t.Helper()
	ctx := context.Background()
	for _, obj := range testenv.ReadManifests(t, dir) {
		var err error
		switch o := obj.(type) {
		case *rbacv1.Role:
			_, err = env.Client.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			for i := range o.Subjects {
				o.Subjects[i].Namespace = ns
			}
			_, err = env.Client.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
	}
}

// saKubeconfig writes a kubeconfig acting as the ServiceAccount ns/name.
func saKubeconfig(t *testing.T, env *testenv.Env, ns, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+"-kubeconfig")
	cfg := env.ImpersonatedConfig("system:serviceaccount:"+ns+":"+name, "system:serviceaccounts", "system:serviceaccounts:"+ns)
	if err := testenv.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBinarySeedMode runs the binary as deployed, with nothing but the RBAC of
// deploy/egress-reporter/{base,shoot}: the reporter in the seed (the shared API
// server, with Gardener's Infrastructure CRD) as the seed ServiceAccount, writing
// the shoot (a second API server) through --shoot.kubeconfig as the shoot
// ServiceAccount; the probe in the shoot as its own ServiceAccount. The
// Infrastructure's CIDRs and the node's probed address end up in shoot-info next
// to gardenlet's keys.
func TestBinarySeedMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	seed := testenv.Get(t)
	installInfrastructureCRD(t, seed)
	ns := seed.Namespace(t)
	setInfrastructure(t, seed, ns, "crocus", []string{"3.74.173.24/32"})
	installRBAC(t, seed, "../../deploy/egress-reporter/base", ns)
	shoot := startShoot(t)
	installRBAC(t, shoot, "../../deploy/egress-reporter/shoot", "kube-system")
	writeShootInfoAsGardenlet(t, shoot.Client, nil)
	ctx := context.Background()
	if _, err := shoot.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stun := probetest.NewSTUNServer(t, "udp4")
	stun.Set(probetest.Answer, netip.MustParseAddr("203.0.113.60"))
	bin := testbin.Build(t, "egress-reporter")

	probe, _ := startBinary(t, bin, "probe", "--kubeconfig="+saKubeconfig(t, shoot, "kube-system", "egress-probe"), "--node.name=node-a",
		"--probe.stun.servers="+stun.Addr, "--probe.interval=200ms", "--probe.timeout=2s")
	reporter, web := startBinary(t, bin, "--kubeconfig="+saKubeconfig(t, seed, ns, "egress-reporter"),
		"--shoot.kubeconfig="+saKubeconfig(t, shoot, "kube-system", "egress-reporter"),
		"--egress.sources=infrastructure,probe", "--infrastructure.namespace="+ns, "--hysteresis.add=0s", "--sync.interval=200ms",
		"--leader-elect", "--leader-elect.namespace="+ns)
	const want = "3.74.173.24/32,203.0.113.60/32"
	testkit.Eventually(t, "egressCIDRs in the shoot", func() bool {
		cm, err := shoot.Client.CoreV1().ConfigMaps(ShootInfoNamespace).Get(ctx, ShootInfoName, metav1.GetOptions{})
		return err == nil && cm.Data[EgressCIDRsKey] == want
	})
	checkShootInfo(t, shoot.Client, want)
	testkit.Eventually(t, "readiness", func() bool { code, _ := testkit.Get("http://" + web + "/readyz"); return code == 200 })
	testkit.Eventually(t, "the change Event in the shoot", func() bool { return len(eventsWith(t, shoot.Client, ReasonChanged)) > 0 })
	if _, err := seed.Client.CoordinationV1().Leases(ns).Get(ctx, "trellis-"+Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("no Lease in the seed namespace: %v", err)
	}
	testbin.Terminate(t, reporter)
	testbin.Terminate(t, probe)
}
