# The action's image: one static binary, the CA bundle and a passwd entry, nothing else.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The same two scripts build what the container test runs (scripts/test): a static
# binary (glibc linked in, so it runs FROM scratch) and the runtime's files around it.
RUN scripts/lib/runtime-root /out "$(scripts/lib/static-build)"

FROM scratch
COPY --from=build /out/ /
# rustls reads its roots from here; scratch has no other place to find them.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# No USER line: GitHub runs container actions as root, and the file-command files it
# mounts (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) are writable by root only from inside. The
# passwd entry lets the command line run unprivileged: docker run --user 65532 ….
# No WORKDIR: the runner mounts the workspace at /github/workspace and starts there.
ENTRYPOINT ["/ecr-push"]
