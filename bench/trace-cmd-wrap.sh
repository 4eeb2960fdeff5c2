#!/bin/sh
# Run a command (trace-cmd) in a private mount namespace where the function-tracer control
# files are writable dummies. trace-cmd record resets them even when it only records
# events; on kernels where they are locked (EPERM, as on the machine the benchmarks ran
# on) it would refuse to start. Events and their buffers are untouched.
# Usage: unshare -m sh bench/trace-cmd-wrap.sh trace-cmd record ...
d=$(mktemp -d)
for f in /proc/sys/kernel/ftrace_enabled /sys/kernel/tracing/set_ftrace_pid \
         /sys/kernel/tracing/set_ftrace_filter /sys/kernel/tracing/set_ftrace_notrace \
         /sys/kernel/tracing/set_graph_function /sys/kernel/tracing/set_graph_notrace \
         /sys/kernel/tracing/set_ftrace_notrace_pid; do
    [ -e "$f" ] || continue
    echo 1 > "$d/$(basename "$f")"
    mount --bind "$d/$(basename "$f")" "$f"
done
exec "$@"
