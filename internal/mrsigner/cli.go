package mrsigner

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/secretsig"
)

// ErrVerificationFailed ends `mr-signer verify` with exit code 1.
var ErrVerificationFailed = errors.New("verification failed")

// document is one document of the input stream: root is its decoded form (re-encoded
// by sign), objects are the objects kubectl would apply from it, with every `items`
// list flattened.
type document struct {
	root    map[string]any
	objects []object
}

// object is one object kubectl would apply: a Secret (secret set) or anything else.
type object struct {
	obj        map[string]any // the object inside root (sign adds its annotation here)
	path       string         // where it is: "document 3", "document 3 items[0].items[2]"
	apiVersion string         // after kubectl's inheritance from the enclosing list
	kind       string
	secret     *corev1.Secret
}

func (o object) String() string {
	ns, name := "", ""
	if meta, ok := o.obj["metadata"].(map[string]any); ok {
		ns, _ = meta["namespace"].(string)
		name, _ = meta["name"].(string)
	}
	if o.secret != nil {
		ns, name = o.secret.Namespace, o.secret.Name
	}
	return fmt.Sprintf("%s %s %s/%s (%s)", o.apiVersion, o.kind, ns, name, o.path)
}

// maxListDepth bounds the recursion into nested lists (hostile input).
const maxListDepth = 32

// readDocuments reads a YAML or JSON stream the way kubectl apply -f does
// (k8s.io/cli-runtime StreamVisitor and FlattenListVisitor over the unstructured
// decoder): documents split by yaml.NewYAMLOrJSONDecoder (YAML `---` streams or
// concatenated JSON objects), empty and null documents skipped, every object with an
// `items` field is a list whatever its kind, recursively, and a list item without
// both kind and apiVersion inherits the list's apiVersion and kind minus "List"
// (unstructured.UnstructuredList decoding). A Secret is any object of the core group
// (apiVersion "v1", "/v1", also "core/v1") whose kind is Secret in any case. Anything
// kubectl might apply that cannot be classified (no kind or apiVersion, an apiVersion
// apimachinery rejects, items that are not objects) is an error, never skipped.
func readDocuments(r io.Reader, namespace string) ([]document, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var docs []document
	for n := 1; ; n++ {
		var ext runtime.RawExtension
		if err := dec.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		raw := bytes.TrimSpace(ext.Raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		var v any
		if err := utiljson.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		root, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("document %d: cannot classify: not an object but %T", n, v)
		}
		d := document{root: root}
		if err := flatten(&d, root, fmt.Sprintf("document %d", n), "", "", namespace, 0); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

// flatten adds obj, or the objects of the list obj, to d.
func flatten(d *document, obj map[string]any, path, listAPIVersion, listKind, namespace string, depth int) error {
	apiVersion, ok1 := stringField(obj, "apiVersion")
	kind, ok2 := stringField(obj, "kind")
	if !ok1 || !ok2 {
		return fmt.Errorf("%s: cannot classify: apiVersion and kind must be strings", path)
	}
	if itemsField, isList := obj["items"]; isList {
		if depth >= maxListDepth {
			return fmt.Errorf("%s: lists nested deeper than %d", path, maxListDepth)
		}
		var items []any
		if itemsField != nil {
			if items, ok1 = itemsField.([]any); !ok1 {
				return fmt.Errorf("%s: cannot classify: items is %T, not a list", path, itemsField)
			}
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return fmt.Errorf("%s items[%d]: cannot classify: not an object but %T", path, i, it)
			}
			if err := flatten(d, m, fmt.Sprintf("%s items[%d]", path, i), apiVersion, strings.TrimSuffix(kind, "List"), namespace, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if apiVersion == "" && kind == "" {
		apiVersion, kind = listAPIVersion, listKind
	}
	if apiVersion == "" || kind == "" {
		return fmt.Errorf("%s: cannot classify: no apiVersion or kind", path)
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return fmt.Errorf("%s: cannot classify: %w", path, err)
	}
	o := object{obj: obj, path: path, apiVersion: apiVersion, kind: kind}
	if (gv.Group == "" || gv.Group == "core") && strings.EqualFold(kind, "Secret") {
		if o.secret, err = asSecret(obj, namespace); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	d.objects = append(d.objects, o)
	return nil
}

// stringField returns obj[key] when it is a string or absent.
func stringField(obj map[string]any, key string) (string, bool) {
	v, present := obj[key]
	if !present || v == nil {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// asSecret converts a Secret object, strictly (unknown fields are an error).
func asSecret(obj map[string]any, namespace string) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj, &s, true); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if s.Namespace == "" {
		s.Namespace = namespace
	}
	if s.Namespace == "" || s.Name == "" {
		return nil, fmt.Errorf("secret %q: metadata.namespace and metadata.name are signed and must be set (or give --namespace)", s.Name)
	}
	return &s, nil
}

func openInput(cmd *cobra.Command, file string) (io.ReadCloser, error) {
	if file == "" || file == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	return os.Open(file)
}

// cliCommands are `mr-signer sign` and `mr-signer verify`.
func cliCommands() []*cobra.Command {
	var signKey, signFile, signNS string
	sign := &cobra.Command{
		Use:   "sign",
		Short: "Sign the Secrets of a YAML stream with a private key; print the stream with signature annotations",
		Long: `sign reads YAML or JSON documents (from --filename, or stdin) as kubectl apply -f
does and writes them to stdout as YAML; every Secret kubectl would apply (also an
item of any list, whatever its kind, nested lists too) gets the trellis.dev/signature
annotation for its namespace, name, type and data (stringData merged in). Other
objects pass through unchanged.
Exit codes: 0 signed, 2 usage or input error (bad flags, unreadable key or input,
a Secret without namespace, a document that cannot be classified).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if signKey == "" {
				return &daemon.UsageError{Err: errors.New("--key: required")}
			}
			pem, err := os.ReadFile(signKey)
			if err != nil {
				return &daemon.UsageError{Err: fmt.Errorf("--key: %w", err)}
			}
			key, err := secretsig.ParsePrivateKeyPEM(pem)
			if err != nil {
				return &daemon.UsageError{Err: fmt.Errorf("--key: %w", err)}
			}
			in, err := openInput(cmd, signFile)
			if err != nil {
				return &daemon.UsageError{Err: err}
			}
			defer in.Close()
			docs, err := readDocuments(in, signNS)
			if err != nil {
				return &daemon.UsageError{Err: fmt.Errorf("input: %w", err)}
			}
			signer := secretsig.NewSigner(key)
			out := cmd.OutOrStdout()
			for i, d := range docs {
				for _, o := range d.objects {
					if o.secret == nil {
						continue
					}
					meta, _ := o.obj["metadata"].(map[string]any)
					ann, _ := meta["annotations"].(map[string]any)
					if ann == nil {
						ann = map[string]any{}
					}
					ann[secretsig.Annotation] = signer.Sign(secretsig.FromSecret(o.secret))
					meta["annotations"] = ann
					meta["namespace"] = o.secret.Namespace
				}
				b, err := yaml.Marshal(d.root)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(out, "---")
				}
				if _, err := out.Write(b); err != nil {
					return err
				}
			}
			return nil
		},
	}
	sign.Flags().StringVar(&signKey, "key", "", "Ed25519 private key `file` (PKCS#8 PEM, e.g. from 'openssl genpkey -algorithm ed25519').")
	sign.Flags().StringVarP(&signFile, "filename", "f", "-", "YAML or JSON file to sign; - for stdin.")
	sign.Flags().StringVar(&signNS, "namespace", "", "Namespace for Secrets that name none (the namespace is signed).")

	var verifyKeys []string
	var verifyFile, verifyNS string
	var verifyAllowOther bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the signatures of the Secrets of a YAML stream",
		Long: `verify reads YAML or JSON documents (from --filename, or stdin) as kubectl apply -f
does: every object with an items field is a list whatever its kind, recursively;
list items without kind and apiVersion take the list's; apiVersion v1, /v1 and
core/v1 with kind Secret are Secrets. It checks the trellis.dev/signature annotation
of every Secret against the public keys of --keys and prints one line per object:
VALID, INVALID, REFUSED (not a Secret) or OTHER (not a Secret, --allow-other).
Exit codes: 0 every Secret is validly signed (and, without --allow-other, nothing
else is in the input), 1 a signature is missing or invalid, an object is not a
Secret, or the input holds no Secret, 2 usage or input error (also a document
that cannot be classified: no kind or apiVersion, a malformed apiVersion or items).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(verifyKeys) == 0 {
				return &daemon.UsageError{Err: errors.New("--keys: required")}
			}
			var pubs []ed25519.PublicKey
			for _, f := range verifyKeys {
				pem, err := os.ReadFile(f)
				if err != nil {
					return &daemon.UsageError{Err: fmt.Errorf("--keys: %w", err)}
				}
				ks, err := secretsig.ParsePublicKeysPEM(pem)
				if err != nil {
					return &daemon.UsageError{Err: fmt.Errorf("--keys %s: %w", f, err)}
				}
				if len(ks) == 0 {
					// A private key file verifies with its public half.
					k, err := secretsig.ParsePrivateKeyPEM(pem)
					if err != nil {
						return &daemon.UsageError{Err: fmt.Errorf("--keys %s: no PUBLIC KEY or PRIVATE KEY block", f)}
					}
					ks = []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
				}
				pubs = append(pubs, ks...)
			}
			in, err := openInput(cmd, verifyFile)
			if err != nil {
				return &daemon.UsageError{Err: err}
			}
			defer in.Close()
			docs, err := readDocuments(in, verifyNS)
			if err != nil {
				return &daemon.UsageError{Err: fmt.Errorf("input: %w", err)}
			}
			set := secretsig.NewKeySet(pubs...)
			out := cmd.OutOrStdout()
			failed, seen, refused := 0, 0, 0
			for _, d := range docs {
				for _, o := range d.objects {
					s := o.secret
					if s == nil {
						if verifyAllowOther {
							fmt.Fprintf(out, "OTHER %s\n", o)
							continue
						}
						refused++
						fmt.Fprintf(out, "REFUSED %s: not a Secret (--allow-other passes it)\n", o)
						continue
					}
					seen++
					id, err := set.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s))
					name := s.Namespace + "/" + s.Name
					if err != nil {
						failed++
						fmt.Fprintf(out, "INVALID %s %s: %v (%s)\n", name, secretsig.Reason(err), err, o.path)
						continue
					}
					fmt.Fprintf(out, "VALID %s key %s (%s)\n", name, id, o.path)
				}
			}
			if refused > 0 {
				return fmt.Errorf("%w: %d objects that are not Secrets (--allow-other passes them)", ErrVerificationFailed, refused)
			}
			if seen == 0 {
				return fmt.Errorf("%w: no Secret in the input", ErrVerificationFailed)
			}
			if failed > 0 {
				return fmt.Errorf("%w: %d of %d Secrets", ErrVerificationFailed, failed, seen)
			}
			return nil
		},
	}
	verify.Flags().StringSliceVar(&verifyKeys, "keys", nil, "Files of Ed25519 public keys (PKIX PEM, several per file allowed) or a private key file; comma-separated or repeated.")
	verify.Flags().StringVarP(&verifyFile, "filename", "f", "-", "YAML or JSON file to verify; - for stdin.")
	verify.Flags().StringVar(&verifyNS, "namespace", "", "Namespace for Secrets that name none.")
	verify.Flags().BoolVar(&verifyAllowOther, "allow-other", false, "Pass objects that are not Secrets (printed as OTHER); without it they fail the verification.")
	for _, c := range []*cobra.Command{sign, verify} {
		c.SilenceUsage, c.SilenceErrors = true, true
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &daemon.UsageError{Err: err} })
	}
	return []*cobra.Command{sign, verify}
}
