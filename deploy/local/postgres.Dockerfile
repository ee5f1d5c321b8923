# PostgreSQL 15 from Debian's packages, for docker-compose.local.yml where no registry can be reached.
# It speaks like the upstream postgres image: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, data in
# /var/lib/postgresql/data, port 5432.
ARG BASE=assemblage-base:bookworm
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY deploy/local/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 0755 /usr/local/bin/postgres-entrypoint && mkdir -p "$PGDATA" /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --retries=20 CMD pg_isready -h 127.0.0.1 -U "${POSTGRES_USER:-postgres}" || exit 1
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
