// Command images builds one OCI image tarball per binary without a container
// engine (internal/imagebuild): `make images` runs it when neither docker nor
// podman is present.
//
//	go run ./scripts/images --bin-dir bin --out bin/images --registry trellis \
//	    --tag v0.1.0 --revision abc123 wg-gateway mr-signer ...
//
// Each image <registry>/<name>:<tag> holds /<name> (mode 0755), the host's CA
// certificates when present, an empty /tmp, entrypoint /<name>, user 65532:65532
// (the distroless nonroot user the Dockerfile uses; pods that need root set it),
// and the OCI version, revision and source labels. The tarballs are written to
// <out>/<name>.tar.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/trellis-garden/trellis/internal/imagebuild"
)

func main() {
	binDir := flag.String("bin-dir", "bin", "Folder with the static binaries.")
	out := flag.String("out", "bin/images", "Folder for the image tarballs.")
	registry := flag.String("registry", "trellis", "Registry and path prefix of the images.")
	tag := flag.String("tag", "", "Image tag (the version; never latest).")
	revision := flag.String("revision", "unknown", "Source revision, for the image label.")
	user := flag.String("user", "65532:65532", "Numeric user:group of the image.")
	flag.Parse()
	if *tag == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: images --tag VERSION [flags] NAME...")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, n := range flag.Args() {
		start := time.Now()
		spec := Spec(*binDir, *registry, n, *tag, *revision, *user)
		file := filepath.Join(*out, n+".tar")
		if err := imagebuild.WriteTarball(spec, file); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s -> %s (%s)\n", spec.Ref, file, time.Since(start).Round(time.Millisecond))
	}
}

// Spec is the image of one binary.
func Spec(binDir, registry, name, tag, revision, user string) imagebuild.Spec {
	s := imagebuild.Spec{
		Ref:        registry + "/" + name + ":" + tag,
		Files:      []imagebuild.File{{Path: "/" + name, Source: filepath.Join(binDir, name), Mode: 0o755}},
		Dirs:       []string{"/tmp"},
		Entrypoint: []string{"/" + name},
		User:       user,
		Labels: map[string]string{
			"org.opencontainers.image.title":    name,
			"org.opencontainers.image.version":  tag,
			"org.opencontainers.image.revision": revision,
			"org.opencontainers.image.source":   "https://github.com/trellis-garden/trellis",
		},
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		s.Files = append(s.Files, imagebuild.File{Path: "/etc/ssl/certs/ca-certificates.crt", Source: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644})
	}
	return s
}
