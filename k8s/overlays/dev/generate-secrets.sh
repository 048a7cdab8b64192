#!/bin/sh
# Writes this overlay's secret inputs once, at random: memlake.env (the URLs memlake uses,
# the bootstrap OPERATOR key and the token the services use between themselves) and deps.env
# (the in-cluster Postgres and Redis passwords). They are git-ignored; keep them (the
# Postgres volume keeps the first password, the database the first bootstrap key).
set -eu
cd "$(dirname "$0")"
if [ -f memlake.env ] && [ -f deps.env ]; then
  echo "memlake.env and deps.env exist; keeping them"
  exit 0
fi
hex() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
urlsafe() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
umask 077
pg=$(hex)
rd=$(hex)
printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\n' "$pg" "$rd" > deps.env
{
  printf 'MEMLAKE_DATABASE_URL=postgresql+psycopg://memlake:%s@memlake-postgres:5432/memlake\n' "$pg"
  printf 'MEMLAKE_REDIS_URL=redis://:%s@memlake-redis:6379/0\n' "$rd"
  printf 'MEMLAKE_BOOTSTRAP_KEY=mlk_bootstrap_%s\n' "$(urlsafe)"
  printf 'MEMLAKE_INTERNAL_TOKEN=%s\n' "$(urlsafe)"
} > memlake.env
echo "wrote memlake.env and deps.env (the OPERATOR key is MEMLAKE_BOOTSTRAP_KEY in memlake.env)"
