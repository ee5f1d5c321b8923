# A real S3 server from Debian's packages: OpenStack Swift with its s3api middleware, the same
# server and configuration as the integration tests (scripts/services-extra.sh), listening on
# 0.0.0.0:9000 so that it stands in for the minio service of docker-compose.yml.
# Credentials: access key "test:tester", secret "testing" (tempauth; local use only).
ARG BASE=assemblage-base:bookworm
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      swift swift-proxy swift-account swift-container swift-object python3-swift memcached curl \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/services-extra.sh /opt/s3/services-extra.sh
COPY scripts/swift /opt/s3/swift
ENV ASSEMBLAGE_SWIFT_DIR=/data \
    ASSEMBLAGE_SWIFT_BIND=0.0.0.0 \
    ASSEMBLAGE_SWIFT_PORT=9000
# the rings are made once here: swift-ring-builder takes seconds per call on a busy machine
RUN /opt/s3/services-extra.sh configure
VOLUME /data
EXPOSE 9000
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD curl -fsS http://127.0.0.1:9000/healthcheck || exit 1
# start the servers in the background, then live as long as the proxy does
ENTRYPOINT ["sh", "-c", "/opt/s3/services-extra.sh start && exec tail --pid=\"$(cat /data/run/proxy.pid)\" -f /dev/null"]
