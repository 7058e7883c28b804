#!/bin/bash
# benchmarks/throughput.py on the lent GPU machine in ONE engine lifetime across several calls.
#
# A call may last at most 600 s, but the machine stays warm between back-to-back calls and a process
# that starts its own session (setsid) outlives the call that started it. So `start` launches the
# benchmark in the background from a private copy of this checkout (the working tree is re-copied on
# every call) and waits; each `wait` call waits again. Both copy the table, the answers' digests
# (stock vs handler token identity), the log and the card to $OUT, so every row measured so far
# comes back even if the machine is taken away before the run ends. Several runs go into one table,
# answers and (appended) log: queue them in one `start`, separated by `--then` (each runs when the one
# before it ended, failed or not), or give a second `start` after the first run ended.
#
# After the three vLLM carries (../shared/gpu/README.md):
#   bash benchmarks/device_throughput.sh start WAIT_S ARGS... [--then ARGS...]...
#        (ARGS: throughput.py arguments without --out/--workdir)
#   bash benchmarks/device_throughput.sh wait WAIT_S      (until the log says the run ended)
set -uo pipefail
W=${W:-/root/tp}
cmd=${1:?usage: $0 start WAIT_S ARGS... | wait WAIT_S}
secs=${2:-540}
shift 2 || true

collect() {
  cp "$W"/throughput.csv "$W"/throughput_answers.jsonl "$W"/log.txt "$W"/card.txt "$OUT"/ 2>/dev/null
  if kill -0 "$(cat "$W/pid")" 2>/dev/null; then echo "RUNNING"; else echo "FINISHED"; fi
  tail -n 30 "$W/log.txt"
}

case "$cmd" in
start)
  bash /root/parts/install-on-device.sh install >/dev/null || exit 4
  mkdir -p "$W" && rm -rf "$W/repo" && cp -r . "$W/repo" && cd "$W/repo" || exit 5
  [ -f "$W/throughput.csv" ] || cp benchmarks/results/throughput.csv "$W/"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$W/card.txt"
  # shellcheck disable=SC1091
  source benchmarks/device_env.sh
  # One line of arguments per queued run; the background job reads them in turn.
  : > "$W/queue.txt"
  line=""
  for a in "$@"; do
    if [ "$a" = "--then" ]; then echo "$line" >> "$W/queue.txt"; line=""; else line="$line $(printf %q "$a")"; fi
  done
  echo "$line" >> "$W/queue.txt"
  PYTHONUNBUFFERED=1 setsid bash -c '
    while read -r line; do
      echo "=== throughput.py$line" >> "$1/log.txt"
      eval "args=($line)"
      python benchmarks/throughput.py "${args[@]}" --out "$1/throughput.csv" --workdir "$1" >> "$1/log.txt" 2>&1 < /dev/null
    done < "$1/queue.txt"' _ "$W" < /dev/null &
  echo $! > "$W/pid"
  cd - > /dev/null || exit 5
  ;;
wait) ;;
*) echo "usage: $0 start WAIT_S ARGS... [--then ARGS...]... | wait WAIT_S" >&2; exit 2 ;;
esac
end=$((SECONDS + secs))
while kill -0 "$(cat "$W/pid")" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 5; done
collect
