package imagebuild

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"archive/tar"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"io"
)

func writeBin(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteTarballRoundTrip(t *testing.T) {
	bin := writeBin(t, "#!/bin/true\nstatic binary stand-in")
	out := filepath.Join(t.TempDir(), "img.tar")
	spec := Spec{
		Ref:        "trellis/wg-gateway:v1.2.3",
		Files:      []File{{Path: "/wg-gateway", Source: bin, Mode: 0o755}, {Path: "/etc/ssl/certs/ca.crt", Source: bin}},
		Dirs:       []string{"/tmp"},
		Entrypoint: []string{"/wg-gateway"},
		User:       "65532:65532",
		Labels:     map[string]string{"org.opencontainers.image.version": "v1.2.3"},
	}
	if err := WriteTarball(spec, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("trellis/wg-gateway:v1.2.3")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/wg-gateway" ||
		cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" || cf.OS != "linux" {
		t.Fatalf("config = %+v", cf.Config)
	}
	// The layer holds the files with their modes, owned by root, and the folders.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]int64{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		got[h.Name] = h.Mode
	}
	want := map[string]int64{"wg-gateway": 0o755, "etc/ssl/certs/ca.crt": 0o644, "tmp": 0o1777, "etc": 0o755, "etc/ssl": 0o755, "etc/ssl/certs": 0o755}
	for n, m := range want {
		if got[n] != m {
			t.Errorf("%s: mode %o, want %o (layer %v)", n, got[n], m, got)
		}
	}
}

func TestBuildIsReproducible(t *testing.T) {
	bin := writeBin(t, "same bytes")
	spec := Spec{Ref: "trellis/x:v1", Files: []File{{Path: "/x", Source: bin, Mode: 0o755}}, Entrypoint: []string{"/x"}, User: "65532"}
	_, a, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("digests differ: %s %s", da, db)
	}
	spec.Created = time.Unix(1, 0)
	_, c, _ := Build(spec)
	if dc, _ := c.Digest(); dc == da {
		t.Fatal("a different creation time gave the same digest")
	}
}

func TestBuildRejects(t *testing.T) {
	bin := writeBin(t, "x")
	for _, tc := range []struct {
		spec Spec
		want error
	}{
		{Spec{Ref: "trellis/x:latest", Files: []File{{Path: "/x", Source: bin}}}, ErrLatest},
		{Spec{Ref: "trellis/x", Files: []File{{Path: "/x", Source: bin}}}, nil},
		{Spec{Ref: "trellis/x:v1", Files: []File{{Path: "relative", Source: bin}}}, nil},
		{Spec{Ref: "trellis/x:v1", Files: []File{{Path: "/x", Source: filepath.Join(t.TempDir(), "missing")}}}, nil},
		{Spec{Ref: "Not A Ref!", Files: []File{{Path: "/x", Source: bin}}}, nil},
	} {
		_, _, err := Build(tc.spec)
		if err == nil {
			t.Errorf("%+v: no error", tc.spec)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.spec, err, tc.want)
		}
	}
}
