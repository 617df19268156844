// Package imagebuild builds OCI images without a container engine: an empty base,
// one layer holding static files (a binary, CA certificates), an entrypoint, a
// numeric user and labels, written as a tarball that `ctr images import` and
// `docker load` read. It is what `make images` uses when no docker or podman is
// present, and what the e2e cluster loads.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of the image's layer.
type File struct {
	// Path inside the image, absolute ("/wg-gateway").
	Path string
	// Source on the host; read when the image is written.
	Source string
	// Mode of the file in the image (0o755 for binaries, 0o644 for data).
	Mode int64
}

// Spec describes one image.
type Spec struct {
	// Ref is the image reference with a tag: "trellis/wg-gateway:v0.1.0".
	Ref string
	// Files of the single layer. Parent folders are created (0755, root).
	Files []File
	// Dirs are extra empty folders, e.g. "/tmp" (mode 1777).
	Dirs []string
	// Entrypoint and the numeric user ("65532:65532", or "0:0").
	Entrypoint []string
	User       string
	Labels     map[string]string
	// Created is the image's creation time; the zero time keeps builds reproducible.
	Created time.Time
}

// ErrLatest is returned for a reference without a tag or tagged "latest": a pod
// with such an image asks for it to be pulled, and no registry is reachable.
var ErrLatest = errors.New("image reference needs a version tag (never latest)")

// Build assembles the image described by spec.
func Build(spec Spec) (name.Tag, v1.Image, error) {
	tag, err := name.NewTag(spec.Ref, name.WeakValidation)
	if err != nil {
		return name.Tag{}, nil, fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	if !strings.Contains(path.Base(spec.Ref), ":") || tag.TagStr() == "latest" {
		return name.Tag{}, nil, fmt.Errorf("%q: %w", spec.Ref, ErrLatest)
	}
	layerTar, err := layer(spec)
	if err != nil {
		return name.Tag{}, nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return name.Tag{}, nil, fmt.Errorf("layer of %s: %w", spec.Ref, err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		return name.Tag{}, nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return name.Tag{}, nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	if a := os.Getenv("GOARCH"); a != "" {
		cf.Architecture = a
	}
	cf.Created = v1.Time{Time: spec.Created}
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.User = spec.User
	cf.Config.Labels = spec.Labels
	cf.Config.Env = []string{"PATH=/"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return name.Tag{}, nil, err
	}
	return tag, img, nil
}

// WriteTarball builds spec and writes it to file as an image tarball.
func WriteTarball(spec Spec, file string) error {
	tag, img, err := Build(spec)
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

// layer is the uncompressed tar of the image's files, entries sorted, owned by
// root, with the zero time, so the same inputs give the same digest.
func layer(spec Spec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]int64{}
	for _, d := range spec.Dirs {
		dirs[path.Clean(d)] = 0o755
	}
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image file %q: path must be absolute", f.Path)
		}
		for d := path.Dir(path.Clean(f.Path)); d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	if _, ok := dirs["/tmp"]; ok {
		dirs["/tmp"] = 0o1777
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: dirs[d], Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	files := append([]File(nil), spec.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("image file %s: %w", f.Path, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: path.Clean(f.Path)[1:], Mode: mode, Size: int64(len(data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
