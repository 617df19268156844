# One image per daemon, each a static binary on distroless.
#   docker build --target wg-gateway -t trellis/wg-gateway:dev .
# `make images` builds every target (needs a container engine: docker or podman).
# Every binary is built with the grpcnotrace tag (no golang.org/x/net/trace in gRPC).
# Build arguments: GO_VERSION, VERSION and REVISION (stamped into `<daemon> version`).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -tags=grpcnotrace" GOWORK=off
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    go build -ldflags "-s -w \
      -X github.com/trellis-garden/trellis/internal/version.version=${VERSION} \
      -X github.com/trellis-garden/trellis/internal/version.revision=${REVISION}" \
      -o /out/ ./cmd/...

# Most daemons run as the distroless nonroot user (65532). zone-flow-tracer needs
# CAP_NET_ADMIN for ctnetlink; its DaemonSet sets the user and capabilities.
FROM gcr.io/distroless/static-debian12:nonroot AS base

FROM base AS wg-gateway
COPY --from=build /out/wg-gateway /wg-gateway
ENTRYPOINT ["/wg-gateway"]

FROM base AS otel-shoot-scraper
COPY --from=build /out/otel-shoot-scraper /otel-shoot-scraper
ENTRYPOINT ["/otel-shoot-scraper"]

FROM base AS zone-flow-tracer
COPY --from=build /out/zone-flow-tracer /zone-flow-tracer
ENTRYPOINT ["/zone-flow-tracer"]

FROM base AS mr-signer
COPY --from=build /out/mr-signer /mr-signer
ENTRYPOINT ["/mr-signer"]

FROM base AS egress-reporter
COPY --from=build /out/egress-reporter /egress-reporter
ENTRYPOINT ["/egress-reporter"]

FROM base AS event-watcher
COPY --from=build /out/event-watcher /event-watcher
ENTRYPOINT ["/event-watcher"]
