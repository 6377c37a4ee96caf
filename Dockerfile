# The hcx image: the static binary and nothing else (no shell, no libc, no CA
# bundle; time zone data is embedded in the binary). Built by `make image`
# (scripts/image.sh), which copies this file and the binary into an empty
# context: nothing is pulled, nothing else is sent to the daemon.
FROM scratch
COPY hcx /hcx
# Owned by the unprivileged user, so named volumes mounted here start writable:
# /data for a member's own state, /material for what `hcx dev init` makes.
COPY --chown=65532:65532 data/ /data/
COPY --chown=65532:65532 data/ /material/
USER 65532:65532
WORKDIR /data
ENTRYPOINT ["/hcx"]
CMD ["help"]
