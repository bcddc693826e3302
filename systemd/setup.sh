#!/bin/bash
# Host set-up for nodevirt on Debian 12 (root): packages, users, directories, the libvirt stack, the build.
# Idempotent and fast when nothing changed; `npm start` and `npm test` run it first.
#
#   bash systemd/setup.sh                   set up and build only
#   bash systemd/setup.sh --start [ARGS]    ... then run the daemon (foreground, or via systemd if PID 1)
#   bash systemd/setup.sh --for-tests       ... plus test packages and the test guest; never starts the daemon
#   bash systemd/setup.sh --host-only       packages, users, directories and the libvirt stack; no build
#   bash systemd/setup.sh --render-unit     print nodevirtd.service as it would be installed (no root needed)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$repo/systemd

start=0
for_tests=0
host_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--start) start=1; shift ;;
	--for-tests) for_tests=1; shift ;;
	--host-only) host_only=1; shift ;;
	--render-unit)
		node_bin=$(command -v node || echo /usr/bin/node)
		sed -e "s#/opt/nodevirt#$repo#g" -e "s#/usr/bin/node #$node_bin #" "$here/nodevirtd.service"
		exit 0
		;;
	--) shift; break ;;
	*)
		# With --start the rest belongs to the daemon; otherwise a typo such as --for-test must not
		# quietly run a different set-up.
		[ "$start" = 1 ] && break
		echo "setup: unknown option: $1 (see the usage at the top of $0)" >&2
		exit 2
		;;
	esac
done
if [ $((start + for_tests + host_only)) -gt 1 ]; then
	echo "setup: --start, --for-tests and --host-only exclude each other" >&2
	exit 2
fi

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
	die "must run as root (it installs packages, creates users and starts libvirt); try: sudo npm ${npm_lifecycle_event:-start}"
fi

t0=$(date +%s%N)
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

has_systemd() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] || [ -d /run/systemd/system ]; }

# --- Debian packages ------------------------------------------------------------------------------------------
packages=(
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients libvirt-dbus dbus
	qemu-system-x86 qemu-utils xorriso nftables iproute2 kmod iputils-ping
	# node-gyp builds native/ (plain C, linked by the C++ driver) and needs python3
	make gcc g++ python3
)
if [ $for_tests = 1 ]; then
	packages+=(
		busybox-static linux-image-amd64 cpio socat chromium python3
		# DHCP clients, servers and tools the DHCP tests talk to (bookworm: dhcpcd-base holds dhcpcd)
		udhcpc dhcpcd-base isc-dhcp-client dnsmasq-base kea-dhcp4-server kea-admin tcpdump ovmf
	)
fi

missing_packages() {
	local installed
	installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null | awk '$2 == "ii" { print $1 }' || true)
	local p
	for p in "${packages[@]}"; do
		grep -qx -- "$p" <<<"$installed" || echo "$p"
	done
}

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages | sort -u)
	[ ${#missing[@]} = 0 ] && return 0
	say "installing ${missing[*]} (waiting for /tmp/apt.lock)"
	# Other installs may run at the same time; hold the shared lock, then look again: they may have done it.
	exec 8>/tmp/apt.lock
	flock 8
	mapfile -t missing < <(missing_packages | sort -u)
	if [ ${#missing[@]} != 0 ]; then
		# Services must not start from maintainer scripts (kea would serve DHCP, libvirtd would start under
		# sysvinit before its users exist); this script starts what nodevirt needs below.
		local policy_rc=/usr/sbin/policy-rc.d own_policy=0
		if [ ! -e $policy_rc ]; then
			printf '#!/bin/sh\n# Temporary, from nodevirt systemd/setup.sh: no service starts during its apt-get.\nexit 101\n' >$policy_rc
			chmod 0755 $policy_rc
			own_policy=1
			# Interrupted (Ctrl-C, CI timeout): never leave every service start on the machine blocked.
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT INT TERM
		fi
		local apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef)
		local rc=0
		# Fresh machine (no package lists) or lists that fail: update once and retry.
		if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
			apt-get update -q >&2 || rc=$?
		fi
		if [ $rc = 0 ] && ! apt-get install "${apt_opts[@]}" "${missing[@]}" >&2; then
			say "apt-get install failed; updating package lists and retrying"
			rc=0
			apt-get update -q >&2 && apt-get install "${apt_opts[@]}" "${missing[@]}" >&2 || rc=$?
		fi
		if [ $own_policy = 1 ]; then
			rm -f $policy_rc
			trap - EXIT INT TERM
		fi
		[ $rc = 0 ] || die "apt-get failed (rc $rc) installing: ${missing[*]}"
	fi
	flock -u 8
	exec 8>&-
}

# --- users, groups, directories, config -----------------------------------------------------------------------
ensure_group() { getent group "$1" >/dev/null || { groupadd --system "$1"; say "created group $1"; }; }
ensure_user() { # ensure_user NAME GROUP HOME
	getent passwd "$1" >/dev/null && return 0
	useradd --system --gid "$2" --home-dir "$3" --no-create-home --shell /usr/sbin/nologin "$1"
	say "created user $1"
}

setup_accounts_and_dirs() {
	# Normally created by the packages' maintainer scripts; a container image may have skipped them.
	ensure_group kvm
	ensure_group libvirt
	ensure_user libvirt-qemu kvm /var/lib/libvirt
	ensure_group libvirtdbus
	ensure_user libvirtdbus libvirtdbus /nonexistent
	ensure_group nodevirt # the API socket's group

	install -d -m 0751 /var/lib/nodevirt
	install -d -m 0755 /run/nodevirt /etc/nodevirt /var/log/nodevirt /var/log/libvirt
	install_if_changed "$here/config.example.yaml" /etc/nodevirt/config.example.yaml 0644 || true
	if [ ! -e /etc/nodevirt/config.yaml ]; then
		install -m 0644 "$here/config.example.yaml" /etc/nodevirt/config.yaml
		say "installed /etc/nodevirt/config.yaml (every key commented out: defaults)"
	fi
}

# install_if_changed SRC DST MODE: copies only when the content differs; returns 1 when nothing changed.
install_if_changed() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then return 1; fi
	install -D -m "$3" "$1" "$2"
	say "installed $2"
}

# --- the libvirt stack ----------------------------------------------------------------------------------------
# Bounded wait: wait_for SECONDS CMD...; true as soon as CMD succeeds.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	while true; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(date +%s)" -ge $deadline ] && return 1
		sleep 0.2
	done
}

dbus_ok() { timeout 5 dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.ListNames >/dev/null 2>&1; }
libvirtd_ok() { timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; }
# Calls org.libvirt: on a bus with activation this starts libvirt-dbus, which is what systemd hosts rely on.
libvirt_dbus_ok() {
	timeout 10 dbus-send --system --print-reply --dest=org.libvirt /org/libvirt/QEMU \
		org.freedesktop.DBus.Properties.Get string:org.libvirt.Connect string:LibVersion >/dev/null 2>&1
}
# Whether anyone owns org.libvirt, without activating it.
libvirt_dbus_owner_pid() {
	timeout 5 dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.GetConnectionUnixProcessID string:org.libvirt 2>/dev/null | awk '{ print $2 }' || true
}

libvirt_dbus_owned() { [ -n "$(libvirt_dbus_owner_pid)" ]; }

pid_alive() { # pid_alive PIDFILE COMM
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

start_stack_without_systemd() {
	local policy_changed=0
	install_if_changed "$here/nodevirt-libvirt-dbus.conf" /etc/dbus-1/system.d/nodevirt-libvirt-dbus.conf 0644 &&
		policy_changed=1

	# dbus
	if pid_alive /run/dbus/pid dbus-daemon && dbus_ok; then
		if [ $policy_changed = 1 ]; then
			timeout 5 dbus-send --system --type=method_call --dest=org.freedesktop.DBus /org/freedesktop/DBus \
				org.freedesktop.DBus.ReloadConfig >/dev/null || true
		fi
	else
		say "starting dbus-daemon --system"
		dbus-uuidgen --ensure
		install -d -m 0755 /run/dbus
		rm -f /run/dbus/pid # stale: dbus-daemon refuses to start over it
		dbus-daemon --system --fork || die "dbus-daemon --system --fork failed (see its messages above)"
		wait_for 10 dbus_ok || die "dbus-daemon --system does not answer ListNames (see its messages above)"
	fi

	# virtlogd (libvirtd hands it the guests' console logs)
	if ! pid_alive /run/virtlogd.pid virtlogd; then
		say "starting virtlogd"
		rm -f /run/virtlogd.pid
		virtlogd -d || die "virtlogd -d failed; see /var/log/libvirt/virtlogd.log"
		wait_for 10 test -S /run/libvirt/virtlogd-sock ||
			die "virtlogd did not create /run/libvirt/virtlogd-sock; see /var/log/libvirt/virtlogd.log"
	fi

	# libvirtd
	if ! pid_alive /run/libvirtd.pid libvirtd || ! libvirtd_ok; then
		if pid_alive /run/libvirtd.pid libvirtd; then
			say "libvirtd (pid $(cat /run/libvirtd.pid)) does not answer; restarting it"
			kill "$(cat /run/libvirtd.pid)" || true
			# shellcheck disable=SC2016 # $1 belongs to the inner shell
			wait_for 15 sh -c '! kill -0 "$1" 2>/dev/null' _ "$(cat /run/libvirtd.pid)" || kill -9 "$(cat /run/libvirtd.pid)" || true
		fi
		say "starting libvirtd"
		rm -f /run/libvirtd.pid
		libvirtd -d || die "libvirtd -d failed; see /var/log/libvirt/libvirtd.log"
		wait_for 30 libvirtd_ok ||
			die "libvirtd does not answer 'virsh -c qemu:///system version'; see /var/log/libvirt/libvirtd.log"
	fi

	# libvirt-dbus, as root (the bus policy above allows it), detached from this script's session
	local owner
	owner=$(libvirt_dbus_owner_pid)
	if [ -n "$owner" ] && libvirt_dbus_ok; then
		return 0
	fi
	if [ -n "$owner" ]; then
		say "libvirt-dbus (pid $owner) does not answer; restarting it"
		kill "$owner" 2>/dev/null || true
		# shellcheck disable=SC2016 # $1 belongs to the inner shell
		wait_for 10 sh -c '[ -z "$(cat /proc/$1/comm 2>/dev/null)" ]' _ "$owner" || kill -9 "$owner" 2>/dev/null || true
	fi
	say "starting libvirt-dbus --system (log /var/log/nodevirt/libvirt-dbus.log)"
	setsid -f libvirt-dbus --system </dev/null >>/var/log/nodevirt/libvirt-dbus.log 2>&1
	# Probe only once it owns the name: a call to an unowned org.libvirt would make dbus-daemon activate
	# Debian's copy (user libvirtdbus) next to ours.
	wait_for 15 libvirt_dbus_owned ||
		die "libvirt-dbus did not claim org.libvirt on the system bus; see /var/log/nodevirt/libvirt-dbus.log"
	wait_for 15 libvirt_dbus_ok ||
		die "libvirt-dbus does not answer org.libvirt.Connect.LibVersion; see /var/log/nodevirt/libvirt-dbus.log"
}

start_stack_with_systemd() {
	systemctl is-active --quiet dbus.service || systemctl start dbus.service >&2 || die "cannot start dbus; see: journalctl -u dbus"
	# Debian starts libvirtd (and virtlogd) on demand through their sockets and lets an idle libvirtd exit,
	# so "enabled, and the sockets listening" is the steady state, not "libvirtd.service active".
	local u
	for u in virtlogd.socket libvirtd.socket libvirtd.service; do
		if ! systemctl is-enabled --quiet "$u" 2>/dev/null || { [ "${u%.socket}" != "$u" ] && ! systemctl is-active --quiet "$u"; }; then
			say "systemctl enable --now $u"
			systemctl enable --now "$u" >&2 || die "cannot start $u; see: journalctl -u $u"
		fi
	done
	wait_for 30 libvirtd_ok || die "libvirtd does not answer 'virsh -c qemu:///system version'; see: journalctl -u libvirtd"
	# Debian ships libvirt-dbus as a D-Bus activated service (user libvirtdbus, authorized by polkit).
	wait_for 15 libvirt_dbus_ok || die "libvirt-dbus (D-Bus activated) does not answer org.libvirt.Connect.LibVersion; see: journalctl -t libvirt-dbus, journalctl -u dbus"

	local unit=/etc/systemd/system/nodevirtd.service rendered
	rendered=$(mktemp)
	bash "$here/setup.sh" --render-unit >"$rendered"
	if install_if_changed "$rendered" "$unit" 0644; then
		systemctl daemon-reload
	fi
	rm -f "$rendered"
	systemctl is-enabled --quiet nodevirtd.service 2>/dev/null || systemctl enable nodevirtd.service >&2
}

# --- the build ------------------------------------------------------------------------------------------------
newer_than() { # newer_than STAMP PATH...: true if STAMP is missing or any file under PATHs is newer
	[ -e "$1" ] || return 0
	local stamp=$1
	shift
	local p existing=()
	for p in "$@"; do [ -e "$p" ] && existing+=("$p"); done
	[ ${#existing[@]} = 0 ] && return 1
	[ -n "$(find "${existing[@]}" -newer "$stamp" -type f -print -quit 2>/dev/null)" ]
}

build() {
	cd "$repo"
	if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
		say "npm ci"
		npm ci --no-audit --no-fund >&2 || die "npm ci failed"
	fi

	if [ -f native/binding.gyp ]; then
		local built
		built=$(find native/build/Release -maxdepth 1 -name '*.node' -print -quit 2>/dev/null || true)
		if [ -z "$built" ] || newer_than "$built" native/binding.gyp native/src; then
			say "building native/ (node-gyp)"
			# Use the installed node's headers: only the npm registry is reachable, not nodejs.org.
			local nodedir_opt=()
			[ -f /usr/include/node/node_api.h ] && nodedir_opt=(--nodedir=/usr)
			# Through the package script: npm puts its bundled node-gyp on PATH there (npx would need the network).
			npm run --silent build:native -- "${nodedir_opt[@]}" >&2 || die "native build failed (npm run build:native)"
		fi
	fi

	if [ -f daemon/main.ts ]; then
		local stamp=dist/.build-stamp
		if newer_than "$stamp" daemon api-spec tsconfig.json package.json package-lock.json; then
			# The generated wire types are committed and never regenerated here: a test compares them with a
			# fresh openapi-typescript run, and regenerating first would hide a stale commit from CI.
			say "compiling TypeScript into dist/"
			mkdir -p dist
			# The stamp is the compile's start time: files edited during the compile rebuild next run.
			touch dist/.build-stamp.new
			npx --no-install tsc -p tsconfig.json >&2 || die "TypeScript compile failed (npx tsc -p tsconfig.json)"
			mv -f dist/.build-stamp.new "$stamp"
		fi
		install_cli
	fi
}

# The admin command the README documents (`nodevirtd token create ...`): a wrapper for this checkout's build.
install_cli() {
	local tmp
	tmp=$(mktemp)
	printf '#!/bin/sh\n# installed by %s/systemd/setup.sh\nexec node %q "$@"\n' "$repo" "$repo/dist/daemon/main.js" >"$tmp"
	install_if_changed "$tmp" /usr/local/sbin/nodevirtd 0755 || true
	rm -f "$tmp"
}

# --- main -----------------------------------------------------------------------------------------------------
install_packages
setup_accounts_and_dirs
if has_systemd; then
	start_stack_with_systemd
else
	start_stack_without_systemd
fi
if [ $host_only = 0 ]; then
	build
	[ $for_tests = 1 ] && bash "$repo/test/guest/build.sh"
fi
say "done in $((($(date +%s%N) - t0) / 1000000)) ms"

if [ $start = 1 ]; then
	if has_systemd; then
		say "systemctl restart nodevirtd"
		systemctl restart nodevirtd.service || true
		systemctl --no-pager status nodevirtd.service || true
		journalctl --no-pager -n 20 -u nodevirtd.service || true
		systemctl is-active --quiet nodevirtd.service || die "nodevirtd did not start; see: journalctl -u nodevirtd"
	else
		[ -f "$repo/dist/daemon/main.js" ] || die "dist/daemon/main.js missing: is daemon/main.ts written yet?"
		say "running the daemon in the foreground (no systemd here)"
		exec node "$repo/dist/daemon/main.js" "$@"
	fi
fi
