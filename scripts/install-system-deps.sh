#!/usr/bin/env bash
# Installs the Debian services the tests start on loopback: PostgreSQL, Mosquitto, an OCI
# registry (docker-registry) and Chromium. None is started here; the tests start their own.
set -euo pipefail

missing=()
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_postgres || missing+=(postgresql)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system services present: postgresql mosquitto docker-registry chromium"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install -y ${missing[*]})" >&2
        [ "${CI:-}" = "true" ] && exit 1
        echo "tests that need them will be skipped" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "missing packages ${missing[*]} and no apt-get; install them with your package manager" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts nothing in a container, but on a host the packaged services may have started:
# the tests use their own instances on free loopback ports either way.
