package imds

import (
	"errors"
	"fmt"
	"strings"
)

var errUnknownProviderID = errors.New("imds: providerID names no supported cloud (azure://, aws://, gce://)")

// ProviderFromProviderID returns the provider (Azure, AWS, GCP) of a Kubernetes
// Node's spec.providerID ("azure://...", "aws://...", "gce://...").
func ProviderFromProviderID(providerID string) (string, error) {
	scheme, _, found := strings.Cut(providerID, "://")
	if found {
		switch strings.ToLower(scheme) {
		case "azure":
			return Azure, nil
		case "aws":
			return AWS, nil
		case "gce":
			return GCP, nil
		}
	}
	return "", fmt.Errorf("%w: %q", errUnknownProviderID, providerID)
}

// AzureResourceNames returns the names under which Azure Scheduled Events list
// the VM of an Azure providerID, for AzureOptions.Resources:
//
//	azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<vmss>/virtualMachines/<id>  ->  ["<vmss>_<id>"]
//	azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>                              ->  ["<name>"]
//
// Path segment names are compared case-insensitively. It returns nil for
// anything else.
func AzureResourceNames(providerID string) []string {
	scheme, rest, found := strings.Cut(providerID, "://")
	if !found || !strings.EqualFold(scheme, "azure") {
		return nil
	}
	var parts []string
	for _, p := range strings.Split(rest, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	n := len(parts)
	if n < 2 || !strings.EqualFold(parts[n-2], "virtualMachines") {
		return nil
	}
	vm := parts[n-1]
	if n >= 4 && strings.EqualFold(parts[n-4], "virtualMachineScaleSets") {
		return []string{parts[n-3] + "_" + vm}
	}
	return []string{vm}
}
