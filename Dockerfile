# The action's image: one static binary, the CA bundle and a passwd entry, nothing else.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# crt-static links glibc into the binary so it runs FROM scratch. The target is named
# explicitly so RUSTFLAGS reach only the binary, not build scripts or proc macros, which
# cannot be static; uname -m picks x86_64 or aarch64.
RUN set -eu; \
    target="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target"; \
    mkdir -p /out/etc/ssl/certs; \
    cp "target/$target/release/ecr-push" /out/ecr-push; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt; \
    echo 'ecr-push:x:65532:65532:ecr-push:/nonexistent:/sbin/nologin' > /out/etc/passwd; \
    echo 'ecr-push:x:65532:' > /out/etc/group

FROM scratch
COPY --from=build /out/ /
# rustls reads its roots from here; scratch has no other place to find them.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# No USER line: GitHub runs container actions as root, and the file-command files it
# mounts (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) are writable by root only from inside. The
# passwd entry lets the command line run unprivileged: docker run --user 65532 ….
# No WORKDIR: the runner mounts the workspace at /github/workspace and starts there.
ENTRYPOINT ["/ecr-push"]
