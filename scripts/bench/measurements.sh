# The measurements of scripts/bench.sh, one function each. qvm and its baseline alternate
# within every measurement (ABBA order: qvm first on even rounds, the baseline first on odd
# ones), so slow drifts of a shared machine hit both alike. Each function records its
# samples and the table rows (specs) that read them.
# shellcheck shell=bash

# 1. Start to QMP ready: `qvm up` (no [ready], so it returns at QMP ready) against bare
#    QEMU with the same argv and bare_qmp (connect with retry, greeting, qmp_capabilities,
#    cont: qvm's supervisor starts QEMU with -S and sends cont before it reports ready).
measure_start_qmp() {
  local state="$bench_out/state/start" machine round side result t0 sock qemu_us ready_us
  for machine in q35 microvm; do
    guest_profile "$bench_profiles/start-$machine.toml" "start-$machine" "$machine"
    bare_argv "$bench_profiles/start-$machine.toml" "bare-start-$machine"
    sock="$bare_runtime/supervisor.qmp"
    # Round 0 warms the page cache (QEMU, firmware, kernel) and qvm's state dir; not recorded.
    for ((round = 0; round <= REPEAT; ++round)); do
      for side in $( ((round % 2)) && echo "bare qvm" || echo "qvm bare"); do
        if [[ $side == qvm ]]; then
          timed_qvm "$state" up "$bench_profiles/start-$machine.toml"
          if ((round)); then
            sample "start_qmp.$machine.qvm" "$elapsed_us" us
            qemu_us=$("$bench_tools/bench_report" qemu-start "$state/vms/start-$machine/events.jsonl")
            sample "start_outside.$machine.qvm" "$((elapsed_us - qemu_us))" us
          fi
          qvm_in "$state" kill "start-$machine"
        else
          result="$bench_out/bare.out"
          t0=${EPOCHREALTIME/./}
          "$bench_tools/bare_qmp" --since-us "$t0" --qmp "$sock" --cont --qemu-log "$bare_state/qemu.log" \
            -- "${bare_words[@]}" >"$result" 2>>"$bench_log"
          if ((round)); then
            ready_us=$(awk '$1 == "qmp_ready_us" {print $2}' "$result")
            qemu_us=$(awk '$1 == "qemu_start_us" {print $2}' "$result")
            sample "start_qmp.$machine.bare" "$ready_us" us
            sample "start_outside.$machine.bare" "$((ready_us - qemu_us))" us
          fi
        fi
      done
    done
    spec "start_qmp_$machine" "Start → QMP ready, $machine (TCG)" ms "start_qmp.$machine.qvm" \
      "start_qmp.$machine.bare" "ratio<=1.10" "bare QEMU, same argv, + bare_qmp" paired
    # QEMU's own start varies by ±40 % from one start to the next; without it what is left
    # is the launcher's cost: total minus QEMU from its spawn to the guest CPUs resuming.
    spec "start_outside_$machine" "Start → QMP ready, $machine: time outside QEMU (total − QEMU spawn → cont)" ms \
      "start_outside.$machine.qvm" "start_outside.$machine.bare" - "bare_qmp" paired
  done
}

# 2 and 8. Start to guest ready (serial line) and `qvm down` of a guest that honours ACPI,
#    against bare QEMU + bare_qmp watching serial.log, then system_powerdown -> QEMU exit.
measure_guest_boot_and_down() {
  local state="$bench_out/state/guest" round side result t0 sock pid
  guest_profile "$bench_profiles/guest.toml" guest q35 1
  bare_argv "$bench_profiles/guest.toml" bare-guest
  sock="$bare_runtime/supervisor.qmp"
  for ((round = 0; round < BOOT_REPEAT; ++round)); do
    for side in $( ((round % 2)) && echo "bare qvm" || echo "qvm bare"); do
      if [[ $side == qvm ]]; then
        timed_qvm "$state" up "$bench_profiles/guest.toml"
        sample guest_ready.qvm "$elapsed_us" us
        # The supervisor of a VM with a serial readiness watch, for measurement 6.
        pid=$(supervisor_pid "$state" guest)
        memory_sample "$pid" guest
        timed_qvm "$state" down guest
        sample down_acpi.qvm "$elapsed_us" us
        grep -q "ACPI power button" <(tail -n 1 "$bench_log") ||
          note "round $round: qvm down of the ACPI guest did not stop it with the power button: $(tail -n 1 "$bench_log")"
      else
        result="$bench_out/bare.out"
        t0=${EPOCHREALTIME/./}
        "$bench_tools/bare_qmp" --since-us "$t0" --qmp "$sock" --cont --serial-log "$bare_state/serial.log" \
          --ready "$guest_ready_text" --powerdown --qemu-log "$bare_state/qemu.log" --timeout 240 \
          -- "${bare_words[@]}" >"$result" 2>>"$bench_log"
        sample guest_ready.bare "$(awk '$1 == "guest_ready_us" {print $2}' "$result")" us
        sample down_acpi.bare "$(awk '$1 == "powerdown_us" {print $2}' "$result")" us
      fi
    done
  done
  spec guest_ready "Start → guest ready (serial line), q35 test guest (TCG)" ms guest_ready.qvm guest_ready.bare \
    "ratio<=1.03" "bare QEMU, same argv, + bare_qmp watching serial.log" paired
  spec down_acpi "\`qvm down\`, guest honours ACPI" ms down_acpi.qvm down_acpi.bare "ratio<=1.10" \
    "bare system_powerdown → QEMU exit" paired
}

# 8. `qvm down` of a guest that ignores the power button: the ladder's ACPI step lasts
#    [shutdown] timeout, then QMP quit. What counts is the time beyond that timeout.
measure_down_ignored() {
  local state="$bench_out/state/ignore" round timeout_s=2
  guest_profile "$bench_profiles/ignore.toml" ignore q35 1 qvm.acpi=ignore "$timeout_s"
  for ((round = 0; round < BOOT_REPEAT; ++round)); do
    timed_qvm "$state" up "$bench_profiles/ignore.toml"
    timed_qvm "$state" down ignore
    sample down_ignore.qvm "$((elapsed_us - timeout_s * 1000000))" us
    sample down_ignore_total.qvm "$elapsed_us" us
    grep -q "quit" <(tail -n 1 "$bench_log") ||
      note "round $round: qvm down of the ACPI-ignoring guest: $(tail -n 1 "$bench_log")"
  done
  spec down_ignore "\`qvm down\`, guest ignores ACPI: time beyond [shutdown] timeout = ${timeout_s} s" ms \
    down_ignore.qvm - "value<100" -
}

# 3. Profile -> argv with Google Benchmark.
measure_argv() {
  local json="$bench_out/argv-bench.json"
  "$bench_tools/qvm_argv_bench" --benchmark_repetitions="$REPEAT" --benchmark_min_time="$GBENCH_MIN_TIME" \
    --benchmark_out="$json" --benchmark_out_format=json >>"$bench_log" 2>&1
  "$bench_tools/bench_report" import-gbench "$json" >>"$bench_raw"
  spec argv_build "Profile → argv (build_command_line), 8 disks + 4 NICs" us \
    argv.BM_BuildCommandLine_8Disks4Nics - "value<50" -
  spec argv_parse "TOML → Profile (parse_profile), 8 disks + 4 NICs" us argv.BM_ParseProfile_8Disks4Nics - - -
  spec argv_parse_build "TOML → argv (parse + build), 8 disks + 4 NICs" us \
    argv.BM_ParseAndBuild_8Disks4Nics - - -
}

# 4. QMP round trip (query-status): qvm::QmpSession against a minimal blocking loop.
measure_qmp_rtt() {
  "$bench_tools/qmp_round_trip" --qemu qemu-system-x86_64 --dir "$bench_out/rtt" --blocks "$RTT_BLOCKS" \
    --calls "$RTT_CALLS" --warmup 200 >>"$bench_raw" 2>>"$bench_log"
  spec qmp_rtt_p50 "QMP round trip query-status, p50" us qmp_rtt.qvm qmp_rtt.raw "ratio<=1.10" \
    "minimal blocking socket loop"
  spec qmp_rtt_p99 "QMP round trip query-status, p99 (median of $RTT_BLOCKS blocks × $RTT_CALLS calls)" us \
    qmp_rtt_p99.qvm qmp_rtt_p99.raw "ratio<=1.10" "minimal blocking socket loop" paired
}

# memory_sample PID LABEL : VmRSS and PSS of one supervisor (6), in kB.
memory_sample() {
  local pid=$1 label=$2
  [[ -n "$pid" && -r "/proc/$pid/status" ]] || { note "no supervisor process to measure ($label)"; return 0; }
  sample "mem_rss.$label" "$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")" kB
  sample "mem_pss.$label" "$(awk '$1 == "Pss:" {print $2}' "/proc/$pid/smaps_rollup")" kB
  # Where it goes, for the report: kept for the first supervisor of each kind.
  if [[ ! -f "$bench_out/memory/$label.pmap" ]]; then
    mkdir -p "$bench_out/memory"
    pmap -x "$pid" >"$bench_out/memory/$label.pmap" 2>&1 || true
    cat "/proc/$pid/smaps_rollup" "/proc/$pid/status" >"$bench_out/memory/$label.status" 2>&1 || true
  fi
}

# 5 and 6. `qvm ls` and `qvm status NAME` with 1, 10 and 50 VMs defined and running
#    (cheap idle q35 VMs), and the resident memory of their supervisors.
measure_ls_status() {
  local state="$bench_out/state/ls" count=0 n i batch round name
  for n in $LS_COUNTS; do
    # Start the missing VMs, ten at a time (concurrent `qvm up` processes: one `qvm up` with
    # several profiles trips over its own operation locks, see measure_parallel_up).
    while ((count < n)); do
      batch=()
      for ((i = 0; i < 10 && count < n; ++i)); do
        count=$((count + 1))
        name=$(printf 'idle-%02d' "$count")
        idle_profile "$bench_profiles/$name.toml" "$name"
        batch+=("$bench_profiles/$name.toml")
      done
      up_concurrently "$state" "${batch[@]}"
    done
    local running
    running=$(QVM_STATE_DIR="$state" "$bench_qvm" ls | grep -c ' running ' || true)
    ((running == n)) || note "ls with $n VMs: only $running are running"
    qvm_in "$state" ls
    for ((round = 0; round < REPEAT; ++round)); do
      timed_qvm "$state" ls
      sample "ls.$n.qvm" "$elapsed_us" us
      timed_qvm "$state" status idle-01
      sample "status.$n.qvm" "$elapsed_us" us
    done
    if ((n == MEMORY_AT)); then
      for ((i = 1; i <= n; ++i)); do
        memory_sample "$(supervisor_pid "$state" "$(printf 'idle-%02d' "$i")")" idle
      done
    fi
  done
  local first last prev=""
  for n in $LS_COUNTS; do
    [[ -z "${first:-}" ]] && first=$n
    spec "ls_$n" "\`qvm ls\`, $n VM$( ((n > 1)) && echo s) running" ms "ls.$n.qvm" - "$([[ $n == "$LS_TARGET_AT" ]] && echo 'value<50' || echo -)" -
    last=$prev
    prev=$n
  done
  if [[ -n "$last" ]]; then
    spec ls_scaling "\`qvm ls\` at $prev VMs vs $last VMs (linear: ×$((prev / last)))" ms "ls.$prev.qvm" \
      "ls.$last.qvm" "ratio<=$((prev / last))" "\`qvm ls\` at $last VMs"
  fi
  spec "status_$prev" "\`qvm status NAME\`, $prev VMs running" ms "status.$prev.qvm" "status.$first.qvm" - \
    "$first VM running"
  spec mem_rss_idle "Supervisor VmRSS (idle q35 VM, $MEMORY_AT supervisors)" MiB mem_rss.idle - "value<=4" -
  spec mem_pss_idle "Supervisor PSS (idle q35 VM, $MEMORY_AT supervisors)" MiB mem_pss.idle - "value<=4" -
  spec mem_rss_guest "Supervisor VmRSS (test guest, serial readiness watch)" MiB mem_rss.guest - "value<=4" -
  spec mem_pss_guest "Supervisor PSS (test guest, serial readiness watch)" MiB mem_pss.guest - "value<=4" -
  kill_all_vms "$state"
}

# 7. `qvm snapshot create` on a running VM: a 64 MiB disk against a 16 GiB one.
measure_snapshots() {
  local state="$bench_out/state/snap" round size
  mkdir -p "$bench_out/disks"
  rm -f "$bench_out"/disks/snap-*.qcow2
  idle_profile "$bench_profiles/snap-64m.toml" snap-64m "$bench_out/disks/snap-64m.qcow2" 64MiB
  idle_profile "$bench_profiles/snap-16g.toml" snap-16g "$bench_out/disks/snap-16g.qcow2" 16GiB
  qvm_in "$state" up "$bench_profiles/snap-64m.toml" "$bench_profiles/snap-16g.toml"
  for ((round = 0; round <= REPEAT; ++round)); do
    for size in $( ((round % 2)) && echo "16g 64m" || echo "64m 16g"); do
      timed_qvm "$state" snapshot create "snap-$size" "s$round"
      if ((round)); then sample "snap.$size.qvm" "$elapsed_us" us; fi
    done
  done
  spec snapshot "\`qvm snapshot create\`, live, 16 GiB disk" ms snap.16g.qvm snap.64m.qvm "ratio<=1.10" \
    "the same on a 64 MiB disk" paired
  kill_all_vms "$state"
}

# 9. PARALLEL_VMS VMs up at once against one `qvm up` after the other. "At once" two ways:
#    PARALLEL_VMS concurrent `qvm up` processes, and one `qvm up` with every profile (which
#    starts them on threads); a run of the latter counts only if every VM came up.
measure_parallel_up() {
  local state="$bench_out/state/parallel" round side i name start end output profiles=()
  local multi_failed=0 multi_refused=0 sides=(concurrent sequential multi)
  for ((i = 1; i <= PARALLEL_VMS; ++i)); do
    name=$(printf 'par-%02d' "$i")
    idle_profile "$bench_profiles/$name.toml" "$name"
    profiles+=("$bench_profiles/$name.toml")
  done
  # Round 0 defines the VMs and warms up; not recorded. Each round rotates the order.
  for ((round = 0; round <= BOOT_REPEAT; ++round)); do
    for ((i = 0; i < 3; ++i)); do
      side=${sides[(round + i) % 3]}
      start=${EPOCHREALTIME/./}
      case $side in
        concurrent)
          up_concurrently "$state" "${profiles[@]}"
          end=${EPOCHREALTIME/./}
          if ((round)); then sample parallel_up.concurrent "$((end - start))" us; fi
          ;;
        sequential)
          for name in "${profiles[@]}"; do qvm_in "$state" up "$name"; done
          end=${EPOCHREALTIME/./}
          if ((round)); then sample parallel_up.sequential "$((end - start))" us; fi
          ;;
        multi)
          output="$bench_out/multi-up.out"
          if QVM_STATE_DIR="$state" "$bench_qvm" up "${profiles[@]}" >"$output" 2>&1; then
            end=${EPOCHREALTIME/./}
            if ((round)); then sample parallel_up.multi "$((end - start))" us; fi
          elif ((round)); then
            multi_failed=$((multi_failed + 1))
            multi_refused=$((multi_refused + $(grep -c 'another qvm command is working on VM' "$output" || true)))
          fi
          cat "$output" >>"$bench_log"
          ;;
      esac
      kill_all_vms "$state"
    done
  done
  spec parallel_up "$PARALLEL_VMS VMs up: $PARALLEL_VMS concurrent \`qvm up\` processes" ms parallel_up.concurrent \
    parallel_up.sequential "ratio<1.00" "$PARALLEL_VMS × \`qvm up\`, one after the other" paired
  spec parallel_up_multi "$PARALLEL_VMS VMs up: one \`qvm up\` with $PARALLEL_VMS profiles (successful runs only)" ms \
    parallel_up.multi parallel_up.sequential "ratio<1.00" "$PARALLEL_VMS × \`qvm up\`, one after the other"
  if ((multi_failed)); then
    note "one \`qvm up\` with $PARALLEL_VMS profiles failed in $multi_failed of $BOOT_REPEAT rounds; $multi_refused VMs in all were refused with \"another qvm command is working on VM\" (its own define lock, still held by a sibling thread's forked child)"
  fi
}
