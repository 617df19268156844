package mrsigner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// kubectlSecrets is what kubectl apply -f would apply from input, computed with
// the code kubectl uses (k8s.io/cli-runtime/pkg/resource StreamVisitor and
// FlattenListVisitor over unstructured.UnstructuredJSONScheme): the namespace/name
// of every core Secret. An error is an input kubectl rejects.
func kubectlSecrets(input string) ([]string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(input), 4096)
	var secrets []string
	for {
		var ext runtime.RawExtension
		if err := dec.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return secrets, nil
			}
			return nil, err
		}
		ext.Raw = bytes.TrimSpace(ext.Raw)
		if len(ext.Raw) == 0 || bytes.Equal(ext.Raw, []byte("null")) {
			continue
		}
		obj, _, err := unstructured.UnstructuredJSONScheme.Decode(ext.Raw, nil, nil)
		if err != nil {
			return nil, err
		}
		queue := []runtime.Object{obj}
		for i := 0; i < len(queue); i++ {
			cur := queue[i]
			if meta.IsListType(cur) {
				items, err := meta.ExtractList(cur)
				if err != nil {
					return nil, err
				}
				queue = append(queue, items...)
				continue
			}
			u, ok := cur.(*unstructured.Unstructured)
			if !ok {
				return nil, fmt.Errorf("item %T", cur)
			}
			gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
			if err != nil {
				return nil, err
			}
			if gv.Group == "" && u.GetKind() == "Secret" {
				secrets = append(secrets, u.GetNamespace()+"/"+u.GetName())
			}
		}
	}
}

// cliSecrets returns the namespace/name of every VALID or INVALID line.
func cliSecrets(out string) []string {
	var s []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && (f[0] == "VALID" || f[0] == "INVALID") {
			s = append(s, f[1])
		}
	}
	return s
}

// TestCLIReadsAsKubectl: documents kubectl would apply, each unsigned and signed
// (by mr-signer sign), alone and mixed: verify must report exactly the Secrets
// kubectl's decoding finds (also in lists of any kind, nested lists, JSON streams,
// apiVersion /v1), fail every unsigned one, and fail on what it cannot classify.
func TestCLIReadsAsKubectl(t *testing.T) {
	dir := t.TempDir()
	key := newEd25519(t)
	priv := filepath.Join(dir, "key.pem")
	pub := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(priv, privPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, []byte(pubPEM(t, key)), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := func(name string) string {
		return `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"` + name + `","namespace":"shoot--p--s"},"data":{"data.yaml":"a2luZDogQ2x1c3RlclJvbGU="}}`
	}
	bare := func(name string) string { // no kind/apiVersion: inherited from a SecretList
		return `{"metadata":{"name":"` + name + `","namespace":"shoot--p--s"},"data":{"x":"eQ=="}}`
	}
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"shoot--p--s"},"data":{"a":"b"}}`
	cases := []struct {
		name    string
		input   string
		secrets []string // what kubectl applies
		other   bool     // holds objects that are not Secrets
		nested  bool     // kubectl's FlattenListVisitor rejects nested lists; verify still checks them
	}{
		{name: "yaml secret", input: "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: shoot--p--s}\nstringData: {k: v}\n", secrets: []string{"shoot--p--s/a"}},
		{name: "json secret", input: secret("a"), secrets: []string{"shoot--p--s/a"}},
		{name: "json stream", input: secret("a") + "\n" + secret("b") + secret("c"), secrets: []string{"shoot--p--s/a", "shoot--p--s/b", "shoot--p--s/c"}},
		{name: "yaml stream with empty and null documents", input: "---\n---\nnull\n---\n" + secret("a") + "\n---\n# comment\n---\n" + secret("b") + "\n", secrets: []string{"shoot--p--s/a", "shoot--p--s/b"}},
		{name: "apiVersion /v1", input: strings.Replace(secret("a"), `"v1"`, `"/v1"`, 1), secrets: []string{"shoot--p--s/a"}},
		{name: "v1 List", input: `{"apiVersion":"v1","kind":"List","items":[` + secret("a") + `,` + secret("b") + `]}`, secrets: []string{"shoot--p--s/a", "shoot--p--s/b"}},
		{name: "SecretList", input: `{"apiVersion":"v1","kind":"SecretList","items":[` + secret("a") + `]}`, secrets: []string{"shoot--p--s/a"}},
		{name: "SecretList items inherit kind", input: `{"apiVersion":"v1","kind":"SecretList","items":[` + bare("a") + `,` + bare("b") + `]}`, secrets: []string{"shoot--p--s/a", "shoot--p--s/b"}},
		{name: "any kind with items", input: "apiVersion: example.com/v1\nkind: Whatever\nitems:\n- " + secret("a") + "\n", secrets: []string{"shoot--p--s/a"}},
		{name: "a Secret with items is a list", input: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"outer","namespace":"shoot--p--s"},"items":[` + secret("a") + `]}`, secrets: []string{"shoot--p--s/a"}},
		{name: "empty list", input: `{"apiVersion":"v1","kind":"List","items":[]}` + "\n" + secret("a"), secrets: []string{"shoot--p--s/a"}},
		{name: "mixed with a ConfigMap", input: secret("a") + "\n" + cm + "\n" + `{"apiVersion":"v1","kind":"List","items":[` + cm + `,` + secret("b") + `]}`, secrets: []string{"shoot--p--s/a", "shoot--p--s/b"}, other: true},
		{name: "List in a List", input: `{"apiVersion":"v1","kind":"List","items":[` + secret("a") + `,{"apiVersion":"v1","kind":"List","items":[` + secret("b") + `,{"apiVersion":"v1","kind":"SecretList","items":[` + bare("c") + `]}]}]}`, secrets: []string{"shoot--p--s/a", "shoot--p--s/b", "shoot--p--s/c"}, nested: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := slices.Sorted(slices.Values(tc.secrets))
			got, err := kubectlSecrets(tc.input)
			switch {
			case tc.nested && err == nil && !slices.Equal(slices.Sorted(slices.Values(got)), want):
				t.Fatalf("kubectl decoding finds %v, want %v", got, want)
			case !tc.nested && err != nil:
				t.Fatalf("kubectl decoding: %v", err)
			case !tc.nested && !slices.Equal(slices.Sorted(slices.Values(got)), want):
				t.Fatalf("the case is wrong: kubectl decoding finds %v, want %v", got, want)
			}
			args := []string{"verify", "--keys=" + pub}
			if tc.other {
				args = append(args, "--allow-other")
			}
			// Unsigned: every Secret is reported and the verification fails.
			code, out, stderr := cli(t, tc.input, args...)
			if code != 1 || !slices.Equal(slices.Sorted(slices.Values(cliSecrets(out))), want) || strings.Contains(out, "VALID ") && !strings.Contains(out, "INVALID") {
				t.Fatalf("unsigned: exit %d (want 1), secrets %v (want %v)\n%s%s", code, cliSecrets(out), want, out, stderr)
			}
			if tc.other {
				if code, out, _ := cli(t, tc.input, "verify", "--keys="+pub); code != 1 || !strings.Contains(out, "REFUSED v1 ConfigMap") {
					t.Fatalf("without --allow-other: exit %d\n%s", code, out)
				}
			}
			code, signed, stderr := cli(t, tc.input, "sign", "--key="+priv)
			if code != 0 {
				t.Fatalf("sign: exit %d\n%s", code, stderr)
			}
			// kubectl applies the same Secrets from the signed output.
			if got, err := kubectlSecrets(signed); !tc.nested && (err != nil || !slices.Equal(slices.Sorted(slices.Values(got)), want)) {
				t.Fatalf("signed output: kubectl finds %v (%v), want %v\n%s", got, err, want, signed)
			}
			code, out, stderr = cli(t, signed, args...)
			if code != 0 || strings.Count(out, "VALID ") != len(want) || !slices.Equal(slices.Sorted(slices.Values(cliSecrets(out))), want) {
				t.Fatalf("signed: exit %d (want 0)\n%s%s", code, out, stderr)
			}
			// One more unsigned Secret, appended inside a list, fails it again.
			mixed := signed + "\n---\n" + `{"apiVersion":"v1","kind":"SecretList","items":[` + bare("late") + `]}` + "\n"
			if code, out, _ := cli(t, mixed, args...); code != 1 || !strings.Contains(out, "INVALID shoot--p--s/late SignatureMissing") {
				t.Fatalf("signed plus an unsigned SecretList item: exit %d\n%s", code, out)
			}
		})
	}

	// Documents that cannot be classified are an input error (exit 2), never skipped.
	for name, input := range map[string]string{
		"no kind":                 `{"apiVersion":"v1","metadata":{"name":"a","namespace":"n"}}`,
		"no apiVersion":           `{"kind":"Secret","metadata":{"name":"a","namespace":"n"}}`,
		"bad apiVersion":          `{"apiVersion":"a/b/c","kind":"Secret","metadata":{"name":"a","namespace":"n"}}`,
		"kind not a string":       `{"apiVersion":"v1","kind":1,"metadata":{"name":"a","namespace":"n"}}`,
		"items not a list":        `{"apiVersion":"v1","kind":"List","items":"x"}`,
		"item not an object":      `{"apiVersion":"v1","kind":"List","items":[1]}`,
		"item of a List, no kind": `{"apiVersion":"v1","kind":"List","items":[{"metadata":{"name":"a","namespace":"n"}}]}`,
		"a scalar document":       "just text\n",
		"an array document":       `[` + secret("a") + `]`,
		"unknown Secret field":    `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"n"},"dta":{}}`,
		"deeply nested lists":     strings.Repeat(`{"apiVersion":"v1","kind":"List","items":[`, 40) + secret("a") + strings.Repeat(`]}`, 40),
	} {
		t.Run("unclassifiable/"+name, func(t *testing.T) {
			if code, out, stderr := cli(t, input, "verify", "--keys="+pub, "--allow-other"); code != 2 {
				t.Fatalf("verify: exit %d (want 2)\n%s%s", code, out, stderr)
			}
			if code, _, stderr := cli(t, input, "sign", "--key="+priv); code != 2 {
				t.Fatalf("sign: exit %d (want 2)\n%s", code, stderr)
			}
		})
	}

	// sign --help names the key flag's value `file`, not a command line.
	_, out, _ := cli(t, "", "sign", "--help")
	if !strings.Contains(out, "--key file") || strings.Contains(out, "--key openssl") {
		t.Fatalf("sign --help:\n%s", out)
	}
}

// FuzzReadDocuments: the CLI's reader never panics on arbitrary input, and when it
// accepts an input, every Secret kubectl's decoding would apply from it is among
// the Secrets it checks (it may check more, never fewer).
func FuzzReadDocuments(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"SecretList","items":[{"metadata":{"name":"a","namespace":"n"}}]}`,
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: /v1, kind: Secret, metadata: {name: a, namespace: n}}\n---\nnull\n",
		`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"n"}}{"apiVersion":"v1","kind":"ConfigMap"}`,
		`{"apiVersion":"x/v1","kind":"Foo","items":[{"apiVersion":"v1","kind":"List","items":[]}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		docs, err := readDocuments(strings.NewReader(input), "default")
		if err != nil {
			return
		}
		ours := map[string]bool{}
		for _, d := range docs {
			for _, o := range d.objects {
				if o.secret != nil {
					ours[o.secret.Namespace+"/"+o.secret.Name] = true
				}
			}
		}
		theirs, err := kubectlSecrets(input)
		if err != nil {
			return
		}
		for _, s := range theirs {
			if ns, name, _ := strings.Cut(s, "/"); ns == "" {
				s = "default/" + name
			}
			if !ours[s] {
				t.Fatalf("kubectl applies Secret %s, the CLI does not check it (it found %v)", s, ours)
			}
		}
	})
}
