#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs weft on a Linux VM with systemd; see deploy/README.md.
#
#   install.sh --mode controller --bin-dir DIR [--token-file FILE] [options]
#   install.sh --mode node --bin-dir DIR --controller HOST:PORT --token-file FILE [options]
#
# Controller mode installs weft-controller (and weftctl) with
# /etc/weft/controller.yaml and the accepted tokens /etc/weft/tokens (copied
# from --token-file, or generated once). Node mode installs weft-agent and
# weft-proxy with /etc/weft/agent.yaml, /etc/weft/proxy.env and the token
# /etc/weft/token, creates the node-local dummy interface with the proxy and
# DNS addresses, and installs weft-node-net.service, which recreates it at
# every boot. Both then enable and start the units.
#
# Idempotent: a second run with the same options changes nothing; configs
# are rewritten from the options, a generated token is kept.
#
# --root DIR installs into DIR instead of / (for images and tests): units
# are enabled offline (systemctl --root), nothing is started and the
# interface is not created unless --net is given.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)

mode='' bin_dir='' root=/ prefix=/usr/local
controller='' token_file='' node_name='' node_address=''
api_listen=0.0.0.0:7480 xds_listen=0.0.0.0:7481
iface=weft0 proxy_ip=169.254.100.1 proxy_port=15001 dns_ip=169.254.100.2 mark=0x77
net='' start='' changed=no

usage() {
	cat <<USAGE
usage: $prog --mode controller|node --bin-dir DIR [options]

  --mode controller|node   what this machine runs
  --bin-dir DIR            directory of the built binaries (make build: bin/)
  --root DIR               install into DIR instead of / (default /)
  --prefix DIR             binaries go to PREFIX/bin (default /usr/local)
  --token-file FILE        controller: accepted tokens, one per line (default:
                           generate one); node: the token to present (required)
  --controller HOST:PORT   node: the controller's xDS address (required)
  --node-name NAME         node: this node's name and xDS node id (default: hostname)
  --node-address IP        node: this node's address: registered for its VM workloads, and the
                           proxy's tunnel listener (IP:15008) other nodes reach
  --api-listen ADDR        controller: API address (default $api_listen)
  --xds-listen ADDR        controller: xDS address (default $xds_listen)
  --iface NAME             node: the dummy interface (default $iface)
  --proxy-ip IP            node: the proxy's address on it (default $proxy_ip)
  --dns-ip IP              node: the agent's DNS address on it (default $dns_ip)
  --mark N                 node: SO_MARK of the proxy's upstream sockets (default $mark)
  --net | --no-net         create the interface now (default: only when --root is /)
  --start | --no-start     enable and start the units (default: only when --root is /)
USAGE
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	opt=$1
	case $opt in
	-h | --help) usage && exit 0 ;;
	--net) net=yes && shift && continue ;;
	--no-net) net=no && shift && continue ;;
	--start) start=yes && shift && continue ;;
	--no-start) start=no && shift && continue ;;
	esac
	[ $# -ge 2 ] || die "$opt: needs a value (see --help)"
	val=$2
	shift 2
	case $opt in
	--mode) mode=$val ;;
	--bin-dir) bin_dir=$val ;;
	--root) root=$val ;;
	--prefix) prefix=$val ;;
	--token-file) token_file=$val ;;
	--controller) controller=$val ;;
	--node-name) node_name=$val ;;
	--node-address) node_address=$val ;;
	--api-listen) api_listen=$val ;;
	--xds-listen) xds_listen=$val ;;
	--iface) iface=$val ;;
	--proxy-ip) proxy_ip=$val ;;
	--dns-ip) dns_ip=$val ;;
	--mark) mark=$val ;;
	*) die "unknown option $opt (see --help)" ;;
	esac
done

# Check every option before touching anything.
errs=()
case $mode in
controller | node) ;;
*) errs+=("--mode: want controller or node, got '$mode'") ;;
esac
[ -n "$bin_dir" ] || errs+=("--bin-dir: is required")
[ -z "$bin_dir" ] || [ -d "$bin_dir" ] || errs+=("--bin-dir: $bin_dir is not a directory")
[[ $root == /* ]] || errs+=("--root: want an absolute path, got '$root'")
[[ $prefix == /* ]] || errs+=("--prefix: want an absolute path, got '$prefix'")
[ -z "$token_file" ] || [ -s "$token_file" ] || errs+=("--token-file: $token_file is missing or empty")
hostport='^[][A-Za-z0-9.:_-]+:[0-9]{1,5}$'
ipv4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
if [ "$mode" = controller ]; then
	[[ $api_listen =~ $hostport ]] || errs+=("--api-listen: want host:port, got '$api_listen'")
	[[ $xds_listen =~ $hostport ]] || errs+=("--xds-listen: want host:port, got '$xds_listen'")
fi
if [ "$mode" = node ]; then
	[ -n "$controller" ] || errs+=("--controller: is required in node mode (the controller's xDS host:port)")
	[ -z "$controller" ] || [[ $controller =~ $hostport ]] || errs+=("--controller: want host:port, got '$controller'")
	[ -n "$token_file" ] || errs+=("--token-file: is required in node mode (the token the controller accepts)")
	[ -n "$node_name" ] || node_name=$(hostname)
	[[ $node_name =~ ^[A-Za-z0-9._-]+$ ]] || errs+=("--node-name: want letters, digits, . _ -, got '$node_name'")
	[ -z "$node_address" ] || [[ $node_address =~ $ipv4 || $node_address == *:* ]] || errs+=("--node-address: want an IP address, got '$node_address'")
	[[ $iface =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || errs+=("--iface: want 1 to 15 letters, digits, _ . -, got '$iface'")
	[[ $proxy_ip =~ $ipv4 ]] || errs+=("--proxy-ip: want an IPv4 address, got '$proxy_ip'")
	[[ $dns_ip =~ $ipv4 ]] || errs+=("--dns-ip: want an IPv4 address, got '$dns_ip'")
	[ "$proxy_ip" != "$dns_ip" ] || errs+=("--dns-ip: is the proxy's address $proxy_ip")
	[[ $mark =~ ^(0x[0-9A-Fa-f]{1,8}|[1-9][0-9]{0,9})$ ]] || errs+=("--mark: want a non-zero number (decimal or 0x hex), got '$mark'")
fi
case $mode in
controller) bins=(weft-controller) ;;
node) bins=(weft-agent weft-proxy) ;;
*) bins=() ;;
esac
for b in "${bins[@]}"; do
	[ -z "$bin_dir" ] || [ -x "$bin_dir/$b" ] || errs+=("--bin-dir: $bin_dir/$b is missing or not executable")
done
if [ ${#errs[@]} -gt 0 ]; then
	for e in "${errs[@]}"; do
		echo "$prog: $e" >&2
	done
	exit 2
fi
[ -n "$net" ] || { [ "$root" = / ] && net=yes || net=no; }
[ -n "$start" ] || { [ "$root" = / ] && start=yes || start=no; }

r=${root%/}
etc=$r/etc/weft
unitdir=$r/etc/systemd/system
umask 022

# put SRC DST MODE: install a file only when its content or mode differs.
put() {
	if [ -f "$2" ] && cmp -s "$1" "$2" && [ "$(stat -c %a "$2")" = "${3#0}" ]; then
		return 0
	fi
	install -D -m "$3" "$1" "$2"
	changed=yes
	echo "$prog: wrote ${2#"$r"}"
}

# write DST MODE < content
write() {
	local tmp
	tmp=$(mktemp)
	cat >"$tmp"
	put "$tmp" "$1" "$2"
	rm -f "$tmp"
}

# unit NAME: install a unit file with @PREFIX@ replaced.
unit() {
	write "$unitdir/$1" 0644 < <(sed "s|@PREFIX@|$prefix|g" "$here/systemd/$1")
}

install_bins() {
	local b
	for b in "$@"; do
		put "$bin_dir/$b" "$r$prefix/bin/$b" 0755
	done
}

units=()
if [ "$mode" = controller ]; then
	install_bins weft-controller
	[ ! -x "$bin_dir/weftctl" ] || install_bins weftctl
	if [ -n "$token_file" ]; then
		put "$token_file" "$etc/tokens" 0600
	elif [ ! -s "$etc/tokens" ]; then
		mkdir -p "$etc"
		(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$etc/tokens" && echo >>"$etc/tokens")
		changed=yes
		echo "$prog: generated a token in ${etc#"$r"}/tokens: give it to the nodes (--token-file)"
	fi
	write "$etc/controller.yaml" 0644 <<CONFIG
# Written by deploy/install.sh; fields: docs/controller.md.
dataDir: /var/lib/weft-controller
apiListen: $api_listen
xdsListen: $xds_listen
auth:
  bearerTokenFile: /run/credentials/weft-controller.service/tokens
CONFIG
	unit weft-controller.service
	units=(weft-controller.service)
else
	install_bins weft-agent weft-proxy
	put "$here/systemd/weft-node-net" "$r$prefix/lib/weft/weft-node-net" 0755
	put "$token_file" "$etc/token" 0600
	# The proxy's tunnel listener, on the node's address: other nodes'
	# proxies reach the listeners with TLS through it. Without
	# --node-address there is none.
	tunnel=
	if [ -n "$node_address" ]; then
		case $node_address in
		*:*) tunnel="[$node_address]:15008" ;;
		*) tunnel="$node_address:15008" ;;
		esac
	fi
	agent_config() {
		echo "# Written by deploy/install.sh; fields: docs/agent.md."
		echo "nodeName: $node_name"
		echo "xds:"
		echo "  server: $controller"
		echo "  tokenFile: /etc/weft/token"
		[ -z "$node_address" ] || echo "  nodeAddress: $node_address"
		echo "proxy:"
		echo "  address: $proxy_ip:$proxy_port"
		echo "  mark: $mark"
		[ -z "$tunnel" ] || echo "  tunnelAddress: $tunnel"
		echo "dns:"
		echo "  listen: $dns_ip:53"
	}
	write "$etc/agent.yaml" 0644 < <(agent_config)
	write "$etc/proxy.env" 0644 <<ENV
# Written by deploy/install.sh: must agree with agent.yaml.
WEFT_XDS_SERVER=$controller
WEFT_NODE_ID=$node_name
WEFT_PROXY_MARK=$mark
WEFT_PROXY_LISTEN=$proxy_ip:$proxy_port
WEFT_TUNNEL_LISTEN=$tunnel
ENV
	write "$etc/node-net.env" 0644 <<ENV
# Written by deploy/install.sh: the agent's proxy.address and dns.listen.
WEFT_IFACE=$iface
WEFT_ADDRESSES="$proxy_ip/32 $dns_ip/32"
ENV
	unit weft-node-net.service
	unit weft.slice
	unit weft-agent.service
	unit weft-proxy.service
	units=(weft-node-net.service weft-agent.service weft-proxy.service)
	if [ "$net" = yes ]; then
		"$r$prefix/lib/weft/weft-node-net" up "$iface" "$proxy_ip/32" "$dns_ip/32"
		echo "$prog: $iface has $proxy_ip and $dns_ip"
	fi
fi

if command -v systemctl >/dev/null; then
	if [ "$start" = yes ]; then
		systemctl daemon-reload
		if [ "$changed" = yes ]; then
			# Those running already pick up the new binaries and configs
			# (weft-node-net.service is not restarted: up ran above).
			local_units=()
			for u in "${units[@]}"; do
				[ "$u" = weft-node-net.service ] || local_units+=("$u")
			done
			systemctl try-restart "${local_units[@]}"
		fi
		systemctl enable --now "${units[@]}"
	else
		systemctl --root="$root" --quiet enable "${units[@]}"
	fi
elif [ "$start" = yes ]; then
	die "systemctl not found: cannot enable ${units[*]}"
fi
echo "$prog: $mode installed under $root"
