package mrsigner

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/secretsig"
)

// ErrVerificationFailed ends `mr-signer verify` with exit code 1.
var ErrVerificationFailed = errors.New("verification failed")

// document is one YAML document of the input: a Secret to sign or verify, or
// anything else, passed through unchanged.
type document struct {
	obj    map[string]any
	secret *corev1.Secret
	items  []listItem // the Secrets of a v1 List
}

type listItem struct {
	obj    map[string]any
	secret *corev1.Secret
}

// secrets returns the document's Secrets with their objects.
func (d document) secrets() []listItem {
	if d.secret != nil {
		return []listItem{{d.obj, d.secret}}
	}
	return d.items
}

// readDocuments reads a multi-document YAML or JSON stream.
func readDocuments(r io.Reader, namespace string) ([]document, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []document
	for {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		if obj == nil {
			continue
		}
		d := document{obj: obj}
		if obj["apiVersion"] == "v1" && obj["kind"] == "List" {
			// kubectl get -o yaml of several objects: check (or sign) each item.
			items, _ := obj["items"].([]any)
			for i, it := range items {
				m, _ := it.(map[string]any)
				if d.secret, err = asSecret(m, namespace); err != nil {
					return nil, fmt.Errorf("items[%d]: %w", i, err)
				}
				if d.secret != nil {
					d.items = append(d.items, listItem{m, d.secret})
				}
			}
			d.secret = nil
		} else if d.secret, err = asSecret(obj, namespace); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
}

// asSecret returns obj as a Secret when it is a v1 Secret, else nil.
func asSecret(obj map[string]any, namespace string) (*corev1.Secret, error) {
	if obj["apiVersion"] != "v1" || obj["kind"] != "Secret" {
		return nil, nil
	}
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
		Long: `sign reads YAML or JSON documents (from --filename, or stdin) and writes them to
stdout; every v1 Secret (also inside a v1 List, as kubectl get -o yaml prints
several objects) gets the trellis.dev/signature annotation for its namespace,
name, type and data (stringData merged in). Other documents pass through unchanged.
Exit codes: 0 signed, 2 usage or input error (bad flags, unreadable key or input,
a Secret without namespace).`,
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
				for _, it := range d.secrets() {
					meta, _ := it.obj["metadata"].(map[string]any)
					ann, _ := meta["annotations"].(map[string]any)
					if ann == nil {
						ann = map[string]any{}
					}
					ann[secretsig.Annotation] = signer.Sign(secretsig.FromSecret(it.secret))
					meta["annotations"] = ann
					meta["namespace"] = it.secret.Namespace
				}
				b, err := yaml.Marshal(d.obj)
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
	sign.Flags().StringVar(&signKey, "key", "", "Ed25519 private key file (PKCS#8 PEM, e.g. from `openssl genpkey -algorithm ed25519`).")
	sign.Flags().StringVarP(&signFile, "filename", "f", "-", "YAML or JSON file to sign; - for stdin.")
	sign.Flags().StringVar(&signNS, "namespace", "", "Namespace for Secrets that name none (the namespace is signed).")

	var verifyKeys []string
	var verifyFile, verifyNS string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the signatures of the Secrets of a YAML stream",
		Long: `verify reads YAML or JSON documents (from --filename, or stdin) and checks the
trellis.dev/signature annotation of every v1 Secret (also inside a v1 List) against the public keys of
--keys; it prints one line per Secret.
Exit codes: 0 every Secret is validly signed, 1 a signature is missing or invalid
(or the input holds no Secret), 2 usage or input error.`,
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
			failed, seen := 0, 0
			for _, d := range docs {
				for _, it := range d.secrets() {
					s := it.secret
					seen++
					id, err := set.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s))
					name := s.Namespace + "/" + s.Name
					if err != nil {
						failed++
						fmt.Fprintf(cmd.OutOrStdout(), "INVALID %s %s: %v\n", name, secretsig.Reason(err), err)
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "VALID %s key %s\n", name, id)
				}
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
	for _, c := range []*cobra.Command{sign, verify} {
		c.SilenceUsage, c.SilenceErrors = true, true
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &daemon.UsageError{Err: err} })
	}
	return []*cobra.Command{sign, verify}
}
