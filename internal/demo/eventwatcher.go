package demo

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

// Names event-watcher writes (docs/event-watcher.md).
const (
	scheduledEventTaint     = "trellis.dev/scheduled-event"
	scheduledEventCondition = "ScheduledEvent"
)

// eventScenario: an Azure VM (a Node as the kubelet registers it, Ready, with a
// running pod) gets a Reboot announced by its fake Scheduled Events service.
// event-watcher sets the condition and the taint, cordons the Node and drains
// it through the Eviction API; a kubelet stand-in removes the evicted pod.
type eventScenario struct {
	ew       *proc
	fake     *imdsfake.Azure
	d        *Demo
	node     string
	ns       string
	pod      string
	eventID  string
	started  atomic.Bool
	proven   atomic.Bool
	podGone  atomic.Bool
	podEvict atomic.Bool  // the pod was seen terminating (evicted), not deleted by anyone else
	phase    atomic.Value // string: where the event is (after the proof, with a pace)
}

func (s *eventScenario) name() string { return "event-watcher" }

func (s *eventScenario) start(ctx context.Context, d *Demo) error {
	s.d = d
	s.node, s.ns, s.pod = "shoot-worker-azure-3", "shop", "web-7d9c5b6f4-x2x8k"
	c := d.env.Client
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.node, Labels: map[string]string{"topology.kubernetes.io/zone": "westeurope-1"}},
		Spec:       corev1.NodeSpec{ProviderID: "azure:///subscriptions/s/resourceGroups/shoot--garden--alpha/providers/Microsoft.Compute/virtualMachineScaleSets/pool/virtualMachines/3"},
	}
	created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: now(), LastTransitionTime: now()}}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The pod belongs to a ReplicaSet, as a Deployment's pods do: event-watcher's
	// drain, like kubectl drain, leaves pods without a controller on the node by
	// default. No controller manager runs here, so the ReplicaSet creates nothing.
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: s.pod[:strings.LastIndex(s.pod, "-")], Namespace: s.ns},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	rs, err = c.AppsV1().ReplicaSets(s.ns).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.pod, Namespace: s.ns, Labels: map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec: corev1.PodSpec{NodeName: s.node, Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
	}
	p, err := c.CoreV1().Pods(s.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now()}}}
	if _, err := c.CoreV1().Pods(s.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return err
	}
	go s.kubelet(ctx)

	s.fake = imdsfake.NewAzure()
	srv := s.fake.Start()
	d.tb.Cleanup(srv.Close)
	ew, err := d.launch(ctx, "event-watcher", d.bin("event-watcher"), []string{
		"--kubeconfig=" + d.env.Kubeconfig, "--node.name=" + s.node, "--metadata.provider=auto",
		"--metadata.endpoint=" + srv.URL, "--poll.interval=500ms", "--drain.pod-poll-interval=500ms",
		"--web.listen-address=127.0.0.1:0",
	}, nil, "serving web endpoints")
	if err != nil {
		return err
	}
	s.ew = ew
	s.started.Store(true)
	// The announcement: this VM reboots in 10 minutes. It is broadcast to the
	// whole scale set, like Azure does; event-watcher acts on its own VM's only.
	s.eventID = s.fake.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"pool_3"},
		NotBefore: imdsfake.AzureTime(time.Now().Add(10 * time.Minute)), DurationInSeconds: -1,
		Description: "Virtual machine is going to be restarted as requested by authorized user."})
	s.phase.Store("Scheduled")
	if d.cfg.Pace > 0 {
		go s.lifecycle(ctx)
	}
	return nil
}

// lifecycle plays the rest of the event for viewers once the drain is shown:
// the platform starts the reboot, then completes it; event-watcher removes
// the condition's event, the taint and its cordon.
func (s *eventScenario) lifecycle(ctx context.Context) {
	if pollUntil(ctx, 5*time.Minute, s.proven.Load) != nil || sleep(ctx, 3*s.d.cfg.Pace) != nil {
		return
	}
	if s.fake.StartEvent(s.eventID) != nil {
		return
	}
	s.phase.Store("Started (rebooting)")
	if sleep(ctx, 2*s.d.cfg.Pace) != nil {
		return
	}
	if s.fake.Complete(s.eventID) == nil {
		s.phase.Store("Completed (gone from the metadata service)")
	}
}

// kubelet stands in for the node's kubelet: an evicted (terminating) pod is
// stopped and its object removed.
func (s *eventScenario) kubelet(ctx context.Context) {
	c := s.d.env.Client
	for {
		p, err := c.CoreV1().Pods(s.ns).Get(ctx, s.pod, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			s.podGone.Store(true)
			return
		case err == nil && p.DeletionTimestamp != nil:
			s.podEvict.Store(true)
			zero := int64(0)
			_ = c.CoreV1().Pods(s.ns).Delete(ctx, s.pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *eventScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	st.Endpoints = []string{endpoint("event-watcher", s.ew)}
	n, err := s.d.env.Client.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
	if err != nil {
		st.Lines = append(st.Lines, "node: "+err.Error())
		return st
	}
	taint := "none"
	for _, t := range n.Spec.Taints {
		if t.Key == scheduledEventTaint {
			taint = fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
		}
	}
	cond := "absent"
	condTrue := false
	for _, c := range n.Status.Conditions {
		if string(c.Type) == scheduledEventCondition {
			cond = fmt.Sprintf("%s (%s)", c.Status, c.Reason)
			condTrue = c.Status == corev1.ConditionTrue
			if condTrue {
				msg := c.Message
				if len(msg) > 110 {
					msg = msg[:110] + "..."
				}
				cond += ": " + msg
			}
		}
	}
	m := scrape(ctx, s.ew.addr("serving web endpoints"))
	podState := "Running on the node"
	switch {
	case s.podGone.Load():
		podState = "evicted and gone"
	case s.podEvict.Load():
		podState = "evicted, terminating"
	}
	st.Lines = append(st.Lines,
		fmt.Sprintf("node %s; fake Azure IMDS: Reboot %s for pool_3: %v", s.node, s.eventID, s.phase.Load()),
		"condition ScheduledEvent: "+cond,
		fmt.Sprintf("taint %s  unschedulable %v", taint, n.Spec.Unschedulable),
		fmt.Sprintf("pod %s/%s: %s  evictions ok %.0f  drains ok %.0f", s.ns, s.pod, podState,
			m.sum("trellis_event_watcher_actions_total", "action", "evict", "result", "success"),
			m.sum("trellis_event_watcher_actions_total", "action", "drain", "result", "success")),
	)
	if condTrue && strings.HasPrefix(taint, scheduledEventTaint+"=Reboot") && s.podGone.Load() && s.podEvict.Load() {
		s.proven.Store(true)
	}
	st.Proven = s.proven.Load()
	st.Proof = "the Reboot became condition ScheduledEvent=True and taint " + scheduledEventTaint + "=Reboot, and the pod was evicted"
	return st
}
