package mrsigner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/daemon"
)

// cli runs mr-signer with args and stdin; it returns the exit code and stdout.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := NewCommand()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	return daemon.Execute(context.Background(), cmd), out.String(), errOut.String()
}

const cliInput = `apiVersion: v1
kind: Secret
metadata:
  name: managedresource-a-1234
  namespace: shoot--p--s
  labels:
    resources.gardener.cloud/garbage-collectable-reference: "true"
type: Opaque
data:
  data.yaml: a2luZDogQ29uZmlnTWFw
stringData:
  extra.yaml: "kind: Namespace"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: passes-through
data:
  a: b
`

// TestCLI: sign and verify on files and stdin with the documented exit codes:
// 0 valid, 1 invalid or missing signature, 2 usage or input error.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, other := newEd25519(t), newEd25519(t)
	priv := write("key.pem", string(privPEM(t, key)))
	pub := write("pub.pem", pubPEM(t, key))
	otherPub := write("other.pem", pubPEM(t, other))
	input := write("in.yaml", cliInput)

	code, signed, stderr := cli(t, "", "sign", "--key="+priv, "-f", input)
	if code != 0 || !strings.Contains(signed, "trellis.dev/signature: v1.") || !strings.Contains(signed, "name: passes-through") {
		t.Fatalf("sign: %d\n%s\n%s", code, signed, stderr)
	}
	signedFile := write("signed.yaml", signed)
	// kubectl get -o yaml of several objects is a v1 List.
	list := "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.Split(cliInput, "---")[0], "\n", "\n  ") +
		"\n- {apiVersion: v1, kind: Secret, metadata: {name: b, namespace: shoot--p--s}, data: {a: YQ==}}\n"
	code, signedList, stderr := cli(t, list, "sign", "--key="+priv)
	if code != 0 || strings.Count(signedList, "trellis.dev/signature: v1.") != 2 {
		t.Fatalf("sign a List: %d\n%s\n%s", code, signedList, stderr)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"valid from a file", "", []string{"verify", "--keys=" + pub, "--allow-other", "-f", signedFile}, 0, "VALID shoot--p--s/managedresource-a-1234"},
		{"valid from stdin, rotation set", signed, []string{"verify", "--keys=" + otherPub + "," + pub, "--allow-other"}, 0, "VALID"},
		{"a ConfigMap without --allow-other", signed, []string{"verify", "--keys=" + pub}, 1, "REFUSED v1 ConfigMap /passes-through"},
		{"private key file verifies", signed, []string{"verify", "--keys=" + priv, "--allow-other"}, 0, "VALID"},
		{"a List", signedList, []string{"verify", "--keys=" + pub}, 0, "VALID shoot--p--s/b"},
		{"a List with one unsigned item", strings.Replace(signedList, "trellis.dev/signature", "x", 1), []string{"verify", "--keys=" + pub}, 1, "SignatureMissing"},
		{"unknown key", signed, []string{"verify", "--keys=" + otherPub}, 1, "UnknownKey"},
		{"changed value", strings.Replace(signed, "kind: Namespace", "kind: ClusterRole", 1), []string{"verify", "--keys=" + pub}, 1, "SignatureInvalid"},
		{"added key", strings.Replace(signed, "stringData:", "stringData:\n  evil.yaml: x", 1), []string{"verify", "--keys=" + pub}, 1, "SignatureInvalid"},
		{"other namespace", strings.Replace(signed, "namespace: shoot--p--s", "namespace: shoot--p--t", 1), []string{"verify", "--keys=" + pub}, 1, "SignatureInvalid"},
		{"unsigned", cliInput, []string{"verify", "--keys=" + pub}, 1, "SignatureMissing"},
		{"no secret", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", []string{"verify", "--keys=" + pub}, 1, ""},
		{"no keys flag", signed, []string{"verify"}, 2, ""},
		{"missing key file", signed, []string{"verify", "--keys=" + filepath.Join(dir, "nope")}, 2, ""},
		{"unknown flag", signed, []string{"verify", "--bogus"}, 2, ""},
		{"broken yaml", "kind: [", []string{"verify", "--keys=" + pub}, 2, ""},
		{"sign without key", cliInput, []string{"sign"}, 2, ""},
		{"sign with a public key", cliInput, []string{"sign", "--key=" + pub}, 2, ""},
		{"sign a secret without namespace", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", []string{"sign", "--key=" + priv}, 2, ""},
		{"sign with --namespace", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", []string{"sign", "--key=" + priv, "--namespace=shoot-ns"}, 0, "namespace: shoot-ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := cli(t, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Fatalf("exit %d (want %d), stdout:\n%s\nstderr:\n%s", code, tc.code, out, stderr)
			}
		})
	}
}
