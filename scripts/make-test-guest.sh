#!/usr/bin/env bash
# Builds the small Linux guest that qvm's integration tests boot under QEMU TCG:
# Debian's own kernel (extracted from its package, never installed) and a
# busybox initramfs whose init scripts live in scripts/guest/, plus the QEMU
# guest agent: qemu-ga from Debian's qemu-guest-agent package (extracted the
# same way) with the shared libraries and loader `ldd` finds for it on this
# host, which must be the same Debian release.
#
# Usage: scripts/make-test-guest.sh OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/guest.env (shell-style
# QVM_GUEST_* assignments with absolute paths). Running it again with the same
# inputs returns at once without touching apt. Tools come from
# scripts/install-deps.sh.
#
# What the guest does (kernel command line must contain console=ttyS0):
#   - prints "qvm-test-guest: ready" on the console once modules are loaded
#     and the root shell on the serial console is up. That shell prints the
#     prompt "qvm# " and does not echo what is typed (busybox's line editor,
#     which echo would switch on, litters the console with escape sequences);
#     `stty echo` in the guest brings echo back;
#   - the ACPI power button prints "qvm-test-guest: power button", then powers
#     off cleanly; `poweroff` / `reboot` typed in the shell work as usual;
#   - qvm.acpi=ignore   the power button is ignored;
#   - qvm.poweroff=N    prints "qvm-test-guest: poweroff" and powers off N s
#                       after ready;
#   - qvm.panic=N       prints "qvm-test-guest: panic" and panics the kernel N s
#                       after ready (QEMU reports GUEST_PANICKED if the machine
#                       has a pvpanic device: -device pvpanic or pvpanic-pci;
#                       nothing needs adding to the kernel command line);
#   - the guest agent: when the machine has a virtio-serial port named
#     org.qemu.guest_agent.0 (-device virtio-serial-pci -device
#     virtserialport,name=org.qemu.guest_agent.0,...), qemu-ga runs on it and
#     already listens when the ready line is printed. guest-exec runs commands
#     with PATH=/sbin:/usr/sbin:/bin:/usr/bin (busybox); guest-shutdown works
#     through a small /sbin/shutdown that prints "qvm-test-guest: shutdown:
#     poweroff|reboot|halt (shutdown ARGS)" and asks init to do it;
#   - qvm.agent=off     qemu-ga is not started even if its port exists.
# A module that fails to load prints "qvm-test-guest: module NAME failed to
# load: ..." and the boot goes on.
set -euo pipefail
shopt -s inherit_errexit

readonly metapackage=linux-image-amd64
readonly agent_package=qemu-guest-agent
readonly busybox_bin=/bin/busybox

# Wanted modules, in the order init should try them: transports first, the
# SCSI upper-level drivers (sd_mod, sr_mod) before the host adapters so disks
# are attached during the adapters' bus scan, and the power button listener's
# inputs before anything slow. Dependencies are inserted before each by
# resolve_module. Optional ones may be missing from a kernel without harm.
readonly required_modules=(
  virtio_pci virtio_mmio
  evdev button
  virtio_console virtio_net virtio_blk
  sd_mod sr_mod virtio_scsi ahci ata_piix nvme
  isofs 9p 9pnet_virtio
)
readonly optional_modules=(pvpanic pvpanic_pci pvpanic_mmio)

die() {
  echo "make-test-guest: error: $*" >&2
  exit 1
}

note() {
  echo "make-test-guest: $*" >&2
}

need_tool() { # TOOL PACKAGE
  command -v "$1" >/dev/null || die "'$1' not found; install the Debian package '$2' (scripts/install-deps.sh does)"
}

if (($# != 1)) || [[ $1 == -* ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

script_path=$(readlink -f "${BASH_SOURCE[0]}")
script_dir=$(dirname "$script_path")
guest_dir=$script_dir/guest
[[ -d $guest_dir ]] || die "$guest_dir is missing"

# guest.env is read as plain KEY=VALUE lines, without any quoting.
plain_path() {
  [[ $1 =~ ^[][A-Za-z0-9_./+@:,=~-]+$ ]] ||
    die "OUTDIR '$1' contains characters that guest.env cannot carry unquoted; choose a simpler path"
}
plain_path "$1"
mkdir -p "$1"
outdir=$(cd "$1" && pwd -P)
plain_path "$outdir"
stamp=$outdir/stamp
kernel_out=$outdir/vmlinuz
initrd_out=$outdir/initrd.img
env_out=$outdir/guest.env

[[ -x $busybox_bin ]] || die "$busybox_bin not found; install the Debian package 'busybox-static'"
need_tool flock util-linux
need_tool sha256sum coreutils

# Tests may run in parallel and all call this script: one builds, the others
# wait and then find the cache valid.
exec {lock_fd}>"$outdir/.lock"
flock "$lock_fd"

# Everything the guest is made from, except the kernel package, which is only
# known by asking apt (slow: ~0.5 s with Debian's docker-style apt config).
inputs_hash=$(
  cd "$script_dir"
  {
    echo "outdir $outdir"
    sha256sum "$(basename "$script_path")" "$busybox_bin"
    find guest -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)

# Stands for "what apt would answer": it only changes when the package lists
# do (apt-get update), so a matching value lets the cached run skip apt.
apt_lists_hash=$(
  shopt -s nullglob
  lists=(/var/lib/apt/lists/*_Packages*)
  if ((${#lists[@]})); then stat -c '%n %s %Y' "${lists[@]}"; fi | sha256sum | cut -d' ' -f1
)

stamp_get() { # KEY
  [[ -f $stamp ]] || return 0
  sed -n "s/^$1=//p" "$stamp"
}

# The host libraries copied next to qemu-ga are inputs as well: an upgrade of
# any of them (same path, new size or time) must rebuild the guest.
libs_hash() { # PATH...
  local lib
  for lib in "$@"; do
    stat -L -c '%n %s %Y' "$lib" 2>/dev/null || echo "$lib missing"
  done | sha256sum | cut -d' ' -f1
}

outputs_exist() {
  [[ -s $kernel_out && -s $initrd_out && -s $env_out && -f $stamp ]]
}

report_cached() {
  echo "make-test-guest: cached guest in $outdir (kernel $(stamp_get kernel_version))"
  exit 0
}

# Writes the stamp from kernel_package, kernel_package_version, kernel_version,
# agent_package_version and agent_libs (space-separated paths).
write_stamp() {
  local tmp=$stamp.tmp
  {
    echo "inputs=$inputs_hash"
    echo "apt_lists=$apt_lists_hash"
    echo "kernel_package=$kernel_package"
    echo "kernel_package_version=$kernel_package_version"
    echo "kernel_version=$kernel_version"
    echo "agent_package_version=$agent_package_version"
    echo "agent_libs=$agent_libs"
    # shellcheck disable=SC2086 # a list of paths without spaces
    echo "agent_libs_hash=$(libs_hash $agent_libs)"
  } >"$tmp"
  mv -f "$tmp" "$stamp"
}

# Takes the stamp's values for a rewrite of the stamp that keeps the guest.
load_stamp() {
  kernel_version=$(stamp_get kernel_version)
  agent_package_version=$(stamp_get agent_package_version)
  agent_libs=$(stamp_get agent_libs)
}

cache_matches_inputs() {
  outputs_exist && [[ $(stamp_get inputs) == "$inputs_hash" ]] || return 1
  local libs
  libs=$(stamp_get agent_libs)
  # A stamp from before the guest had an agent has no library list.
  # shellcheck disable=SC2086 # a list of paths without spaces
  [[ -n $libs && $(stamp_get agent_libs_hash) == "$(libs_hash $libs)" ]]
}

if cache_matches_inputs && [[ $(stamp_get apt_lists) == "$apt_lists_hash" ]]; then
  report_cached
fi

need_tool apt-cache apt
need_tool apt-get apt
need_tool dpkg-deb dpkg
need_tool dpkg-query dpkg
need_tool cpio cpio
need_tool gzip gzip

apt_get() {
  local opts=(-qq)
  # As root apt would drop to _apt for the download and warn that _apt cannot
  # write to OUTDIR; there is nothing to protect here.
  if ((EUID == 0)); then opts+=(-o APT::Sandbox::User=root); fi
  apt-get "${opts[@]}" "$@"
}

apt_update() {
  ((EUID == 0)) || die "apt-get update is needed to $1, but this is not root; run 'apt-get update' as root first"
  note "running apt-get update to $1"
  DEBIAN_FRONTEND=noninteractive apt_get update
}

resolve_kernel_package() {
  # awk reads to the end so apt-cache never writes into a closed pipe.
  apt-cache depends "$metapackage" 2>/dev/null |
    awk '$1 ~ /^\|?Depends:$/ && $2 ~ /^linux-image-/ && !found { print $2; found = 1 }'
}

kernel_package=$(resolve_kernel_package)
if [[ -z $kernel_package ]]; then
  # Without package lists apt knows nothing; a guest we built before is still
  # good for offline work, otherwise fetch the lists once.
  if cache_matches_inputs; then
    note "apt does not know $metapackage; keeping the guest built before"
    kernel_package=$(stamp_get kernel_package)
    kernel_package_version=$(stamp_get kernel_package_version)
    load_stamp
    write_stamp
    report_cached
  fi
  apt_update "resolve $metapackage"
  kernel_package=$(resolve_kernel_package)
  [[ -n $kernel_package ]] || die "apt-cache depends $metapackage names no linux-image package"
fi
kernel_package_version=$(apt-cache show --no-all-versions "$kernel_package" | awk '$1 == "Version:" && !found { print $2; found = 1 }')
[[ -n $kernel_package_version ]] || die "apt-cache show $kernel_package gives no version"
agent_package_version=$(apt-cache show --no-all-versions "$agent_package" 2>/dev/null | awk '$1 == "Version:" && !found { print $2; found = 1 }')
[[ -n $agent_package_version ]] || die "apt-cache show $agent_package gives no version (is this Debian 12 with its main component?)"

if cache_matches_inputs &&
  [[ $(stamp_get kernel_package) == "$kernel_package" &&
    $(stamp_get kernel_package_version) == "$kernel_package_version" &&
    $(stamp_get agent_package_version) == "$agent_package_version" ]]; then
  load_stamp
  write_stamp
  report_cached
fi

[[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == "install ok installed" ]] ||
  die "$busybox_bin is not from 'busybox-static' (a dynamically linked busybox cannot run in the initramfs); install busybox-static"

note "building guest with $kernel_package $kernel_package_version and $agent_package $agent_package_version (first run downloads ~70 MB)"

# Left behind by a build that was killed; nobody else builds while we hold the lock.
find "$outdir" -maxdepth 1 -name '.work.*' -exec rm -rf {} +
work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- packages -------------------------------------------------------------

cache=$outdir/cache
mkdir -p "$cache"

download_deb() { # PACKAGE VERSION DEB_NAME
  local dl=$work/download
  rm -rf "$dl"
  mkdir -p "$dl"
  (cd "$dl" && apt_get download "$1=$2")
  [[ -f $dl/$3 ]] || return 1
  # Only complete downloads enter the cache, so an interrupted run never
  # leaves a truncated package behind for the next one.
  mv -f "$dl/$3" "$cache/$3"
}

# Makes sure PACKAGE=VERSION is in the cache, downloading it if needed, and
# deletes the cached .debs matching OLD_GLOB that are not it (older versions
# are never used again). Sets $fetched to its path.
fetch_deb() { # PACKAGE VERSION OLD_GLOB
  local name=${1}_${2//:/%3a}_amd64.deb
  fetched=$cache/$name
  [[ -f $fetched ]] && return 0
  note "downloading $1 $2"
  if ! download_deb "$1" "$2" "$name" 2>"$work/download.err"; then
    note "download failed: $(tr '\n' ' ' <"$work/download.err")"
    apt_update "download $1"
    download_deb "$1" "$2" "$name" || die "apt-get download $1=$2 failed"
  fi
  find "$cache" -maxdepth 1 -name "$3" ! -name "$name" -delete
}

fetch_deb "$kernel_package" "$kernel_package_version" 'linux-image-*.deb'
deb=$fetched
deb_name=$(basename "$deb")
fetch_deb "$agent_package" "$agent_package_version" "${agent_package}_*.deb"
agent_deb=$fetched

pkgroot=$work/pkg
dpkg-deb -x "$deb" "$pkgroot"

shopt -s nullglob
moddirs=("$pkgroot"/lib/modules/* "$pkgroot"/usr/lib/modules/*)
shopt -u nullglob
((${#moddirs[@]} == 1)) || die "expected one module directory in $deb_name, found ${#moddirs[@]}"
src_moddir=${moddirs[0]}
kernel_version=$(basename "$src_moddir")
[[ -f $pkgroot/boot/vmlinuz-$kernel_version ]] || die "$deb_name has no boot/vmlinuz-$kernel_version"

# --- initramfs tree -------------------------------------------------------

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/qvm,etc/acpi,proc,sys,dev,run,tmp,root,mnt,var/log}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

cp "$busybox_bin" "$root/bin/busybox"
while read -r applet; do
  [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox_bin" --list-full)
# The kernel runs /init from an initramfs; as "init", busybox becomes
# busybox init and reads /etc/inittab.
ln -s bin/busybox "$root/init"

install -m 0644 "$guest_dir/inittab" "$root/etc/inittab"
install -m 0644 "$guest_dir/acpid.conf" "$root/etc/acpid.conf"
install -m 0644 "$guest_dir/functions" "$guest_dir/shrc" "$root/etc/qvm/"
install -m 0755 "$guest_dir/rcS" "$guest_dir/console-shell" "$guest_dir/timed" "$guest_dir/agent" "$root/etc/qvm/"
install -m 0755 "$guest_dir/power-button" "$root/etc/acpi/power-button"
# Replaces nothing: busybox has no shutdown applet (qemu-ga's guest-shutdown
# runs /sbin/shutdown).
install -m 0755 "$guest_dir/shutdown" "$root/sbin/shutdown"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

# --- guest agent ----------------------------------------------------------

agentroot=$work/agent
dpkg-deb -x "$agent_deb" "$agentroot"
qemu_ga=$agentroot/usr/sbin/qemu-ga
[[ -x $qemu_ga ]] || die "$(basename "$agent_deb") has no usr/sbin/qemu-ga"
install -m 0755 "$qemu_ga" "$root/usr/sbin/qemu-ga"

# ldd lists every library qemu-ga loads and the dynamic loader, as this host
# resolves them; each is copied (symlinks followed) to the same path in the
# guest, where the loader's built-in search path finds it without ld.so.cache.
ldd_out=$(ldd "$qemu_ga") || die "ldd $qemu_ga failed: $ldd_out"
missing=$(awk '$2 == "=>" && $3 == "not" { print $1 }' <<<"$ldd_out")
[[ -z $missing ]] ||
  die "qemu-ga needs $(tr '\n' ' ' <<<"$missing")which this host lacks; install what $agent_package depends on: $(dpkg-deb -f "$agent_deb" Depends)"
agent_lib_list=()
while read -r lib; do
  [[ -n $lib ]] || continue
  agent_lib_list+=("$lib")
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
[[ -n $(awk '$1 ~ /^\/.*ld-linux/' <<<"$ldd_out") ]] || die "ldd names no dynamic loader for qemu-ga"
agent_libs=${agent_lib_list[*]}

# --- kernel modules -------------------------------------------------------

dst_moddir=$root/lib/modules/$kernel_version
mkdir -p "$dst_moddir"

declare -A mod_file=()    # module name -> path under the module directory
declare -A mod_builtin=() # module name -> 1 when built into vmlinuz
declare -A mod_state=()   # module name -> visiting | resolved
load_order=()             # "name path" lines for the guest's /etc/qvm/modules

modname() { # PATH -> name as the kernel spells it ('-' and '_' are equivalent)
  local n=${1##*/}
  n=${n%%.ko*}
  echo "${n//-/_}"
}

while IFS= read -r -d '' f; do
  rel=${f#"$src_moddir"/}
  mod_file[$(modname "$rel")]=$rel
done < <(find "$src_moddir" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)
if [[ -f $src_moddir/modules.builtin ]]; then
  while read -r rel; do
    mod_builtin[$(modname "$rel")]=1
  done <"$src_moddir/modules.builtin"
fi

# Copies one module into the initramfs uncompressed: busybox insmod cannot
# read every compression Debian has used, and the initramfs is compressed as
# a whole anyway. Prints the path of the copy under the module directory.
stage_module() { # REL
  local rel=$1 out
  out=${rel%.xz}
  out=${out%.zst}
  out=${out%.gz}
  mkdir -p "$(dirname "$dst_moddir/$out")"
  case $rel in
  *.ko.xz)
    need_tool xz xz-utils
    xz -dc "$src_moddir/$rel" >"$dst_moddir/$out"
    ;;
  *.ko.zst)
    need_tool zstd zstd
    zstd -dcq "$src_moddir/$rel" >"$dst_moddir/$out"
    ;;
  *.ko.gz) gzip -dc "$src_moddir/$rel" >"$dst_moddir/$out" ;;
  *) cp "$src_moddir/$rel" "$dst_moddir/$out" ;;
  esac
  echo "$out"
}

module_exists() { # NAME
  [[ -n ${mod_file[$1]:-} || -n ${mod_builtin[$1]:-} ]]
}

# Depth-first over each module's depends= (the field depmod builds modules.dep
# from), so every module comes after all it needs. Callers check
# module_exists first rather than testing this function's status, which would
# switch off errexit inside it.
resolve_module() { # NAME
  local name=$1 staged deps dep
  case ${mod_state[$name]:-} in
  resolved) return 0 ;;
  visiting) die "module dependency cycle through $name" ;;
  esac
  if [[ -n ${mod_builtin[$name]:-} ]]; then
    mod_state[$name]=resolved
    return 0
  fi
  mod_state[$name]=visiting
  staged=$(stage_module "${mod_file[$name]}")
  deps=$(tr '\0' '\n' <"$dst_moddir/$staged" | sed -n 's/^depends=//p')
  for dep in ${deps//,/ }; do
    module_exists "${dep//-/_}" || die "$name needs $dep, which $deb_name does not ship"
    resolve_module "${dep//-/_}"
  done
  mod_state[$name]=resolved
  load_order+=("$name $staged")
}

for m in "${required_modules[@]}"; do
  module_exists "$m" || die "$deb_name has no module $m"
  resolve_module "$m"
done
for m in "${optional_modules[@]}"; do
  if module_exists "$m"; then
    resolve_module "$m"
  else
    note "$deb_name has no module $m; leaving it out"
  fi
done
printf '%s\n' "${load_order[@]}" >"$root/etc/qvm/modules"

# modules.dep etc. let the guest's modprobe (and the kernel's request_module)
# find the shipped modules, e.g. for later shared-folder tests.
for f in modules.builtin modules.order; do
  if [[ -f $src_moddir/$f ]]; then cp "$src_moddir/$f" "$dst_moddir/"; fi
done
"$busybox_bin" depmod -b "$root" "$kernel_version"

# Cross-check the computed order against the modules.dep depmod just wrote.
awk -v order="$root/etc/qvm/modules" '
  BEGIN { while ((getline line < order) > 0) { split(line, f, " "); pos[f[2]] = ++n } }
  {
    mod = $1; sub(/:$/, "", mod)
    if (!(mod in pos)) next
    for (i = 2; i <= NF; i++)
      if (!($i in pos) || pos[$i] > pos[mod]) { print "bad order: " mod " needs " $i; bad = 1 }
  }
  END { exit bad }' "$dst_moddir/modules.dep" >&2 || die "module load order contradicts modules.dep"

# --- outputs --------------------------------------------------------------

# Fixed timestamps and owners make the initramfs depend on its contents only.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --quiet --null -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$work/initrd.img"

install -m 0644 "$pkgroot/boot/vmlinuz-$kernel_version" "$work/vmlinuz"
{
  echo "QVM_GUEST_KERNEL=$kernel_out"
  echo "QVM_GUEST_INITRD=$initrd_out"
  echo "QVM_GUEST_KERNEL_VERSION=$kernel_version"
  echo "QVM_GUEST_KERNEL_PACKAGE=$kernel_package"
  echo "QVM_GUEST_KERNEL_PACKAGE_VERSION=$kernel_package_version"
} >"$work/guest.env"

# The stamp goes last and is written only once the outputs are in place, so an
# interrupted build is never mistaken for a finished one.
rm -f "$stamp"
mv -f "$work/vmlinuz" "$kernel_out"
mv -f "$work/initrd.img" "$initrd_out"
mv -f "$work/guest.env" "$env_out"
write_stamp

echo "make-test-guest: built guest in $outdir: kernel $kernel_version ($kernel_package $kernel_package_version)," \
  "${#load_order[@]} modules, qemu-ga $agent_package_version with ${#agent_lib_list[@]} libraries," \
  "initrd $(($(stat -c %s "$initrd_out") / 1024)) KiB"
