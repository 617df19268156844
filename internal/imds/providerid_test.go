package imds_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/imds"
)

func TestProviderFromProviderID(t *testing.T) {
	for id, want := range map[string]string{
		"azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm0": imds.Azure,
		"aws:///eu-west-1a/i-0123456789abcdef0":                                                      imds.AWS,
		"gce://project/europe-west1-b/node-1":                                                        imds.GCP,
		"AWS:///eu-west-1a/i-1":                                                                      imds.AWS,
	} {
		got, err := imds.ProviderFromProviderID(id)
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", id, got, err, want)
		}
	}
	for _, id := range []string{"", "kind://docker/kind/node", "azure", "openstack:///1234", "://x"} {
		if got, err := imds.ProviderFromProviderID(id); err == nil {
			t.Errorf("%q: %q without error", id, got)
		}
	}
}

func TestAzureResourceNames(t *testing.T) {
	for id, want := range map[string][]string{
		"azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/3": {"aks-nodepool1-12345678-vmss_3"},
		"azure:///subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachinescalesets/shoot-worker/virtualmachines/12":                  {"shoot-worker_12"},
		"azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/shoot--dev--x-worker-z1-abc":                              {"shoot--dev--x-worker-z1-abc"},
		"Azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/VirtualMachines/vm0/":                                                     {"vm0"},
		"azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss":                                             nil,
		"azure:///subscriptions/s/resourceGroups/rg": nil,
		"aws:///eu-west-1a/i-1":                      nil,
		"":                                           nil,
		"azure://":                                   nil,
		"azure:///virtualMachines":                   nil,
	} {
		if got := imds.AzureResourceNames(id); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}

func FuzzAzureResourceNames(f *testing.F) {
	f.Add("azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines/0")
	f.Add("azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm0")
	f.Add("aws:///eu-west-1a/i-1")
	f.Add("azure:////virtualMachines//")
	f.Fuzz(func(t *testing.T, id string) {
		names := imds.AzureResourceNames(id)
		if len(names) > 1 {
			t.Fatalf("%d names", len(names))
		}
		for _, n := range names {
			if n == "" || strings.Contains(n, "/") {
				t.Fatalf("name %q", n)
			}
		}
		p, err := imds.ProviderFromProviderID(id)
		if names != nil && (err != nil || p != imds.Azure) {
			t.Fatalf("names %q but provider %q, %v", names, p, err)
		}
	})
}
