#!/usr/bin/env bash
# Installs the system packages goexd needs (bubblewrap, git, sqlite3) when they are missing,
# the PostgreSQL server binaries the tests start private clusters with, node and npm for
# the json-server the tests run, and podman and runc for the container sandbox's tests.
# Runs apt-get only as root; otherwise names what to install and fails.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v git >/dev/null 2>&1 || need+=(git)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
[ -x /usr/bin/python3 ] || need+=(python3)  # python actions run the system python3 in the sandbox
command -v pgrep >/dev/null 2>&1 || need+=(procps)  # the tests look for leftover sandbox processes
[ -x /usr/bin/curl ] || need+=(curl)  # the egress proxy tests run curl in the sandbox
# The sandbox's seccomp filters are compiled with libseccomp (pyseccomp loads it); a root goexd
# switches to a workspace's owner with setpriv and applies rlimits with prlimit (util-linux).
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || need+=(libseccomp2)
{ command -v prlimit && command -v setpriv; } >/dev/null 2>&1 || need+=(util-linux)
# The security suite (tests/security): it builds a static i386-entry probe with gcc, tries setcap
# in actions, and starts host processes with setpriv and unshare.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
compgen -G '/usr/lib/*/libc.a' >/dev/null || need+=(libc6-dev)
[ -x /usr/sbin/setcap ] || need+=(libcap2-bin)
{ command -v setpriv && command -v unshare; } >/dev/null 2>&1 || need+=(util-linux)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# systemd-analyze checks the units goex install-service writes; systemctl --user is what --enable runs.
{ command -v systemd-analyze && command -v systemctl; } >/dev/null 2>&1 || need+=(systemd)
# The container sandbox's tests run Podman's Docker-compatible API service (tests/services/container_engine.py)
# with the runc runtime; the image they use is built from this machine's packages (dpkg-query).
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
# node and npm: make install puts json-server, a REST service the tests run, into .venv/node.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# initdb/pg_ctl/postgres for the tests' throwaway clusters (tests/services/postgres.py): taken from
# /usr/local/bin, else from a Debian install under /usr/lib/postgresql/*/bin.
pg_missing=0
if [ ! -x /usr/local/bin/initdb ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
  pg_missing=1
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ "$pg_missing" -eq 1 ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  # Only the binaries are wanted: no system-wide "main" cluster started on port 5432.
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
