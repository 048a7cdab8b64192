#!/bin/sh
# Writes this overlay's secret inputs once, with random passwords: memlake.env (the URLs
# memlake uses) and deps.env (the in-cluster Postgres and Redis passwords). They are
# git-ignored; keep them (the Postgres volume keeps the first password).
set -eu
cd "$(dirname "$0")"
if [ -f memlake.env ] && [ -f deps.env ]; then
  echo "memlake.env and deps.env exist; keeping them"
  exit 0
fi
rand() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
pg=$(rand)
rd=$(rand)
printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\n' "$pg" "$rd" > deps.env
printf 'MEMLAKE_DATABASE_URL=postgresql+psycopg://memlake:%s@memlake-postgres:5432/memlake\nMEMLAKE_REDIS_URL=redis://:%s@memlake-redis:6379/0\n' "$pg" "$rd" > memlake.env
echo "wrote memlake.env and deps.env"
