package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates (or updates) the CustomResourceDefinitions in the given YAML
// files (several documents per file allowed; other kinds are an error) and waits
// until each is Established, so clients can use the new resources at once.
func (e *Env) InstallCRDs(ctx context.Context, files ...string) ([]string, error) {
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return names, err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return names, fmt.Errorf("%s: %w", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if obj.GetKind() != "CustomResourceDefinition" {
				return names, fmt.Errorf("%s: %s %q is not a CustomResourceDefinition", f, obj.GetKind(), obj.GetName())
			}
			body, err := json.Marshal(obj.Object)
			if err != nil {
				return names, err
			}
			if _, err := e.Dynamic.Resource(crdGVR).Patch(ctx, obj.GetName(), "application/apply-patch+yaml", body,
				metav1.PatchOptions{FieldManager: "testenv", Force: ptrTrue()}); err != nil {
				return names, fmt.Errorf("%s: apply CRD %s: %w", f, obj.GetName(), err)
			}
			names = append(names, obj.GetName())
		}
	}
	for _, n := range names {
		if err := e.waitEstablished(ctx, n); err != nil {
			return names, err
		}
	}
	return names, nil
}

func (e *Env) waitEstablished(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		obj, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not established: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ptrTrue() *bool { t := true; return &t }

// ModuleDir returns the folder of a Go module version in the module cache,
// downloading it through the module proxy when needed. Tests read published files
// from it (e.g. Gardener's CRDs) instead of copying them into the repository.
func ModuleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, info.Error)
	}
	return info.Dir, nil
}
