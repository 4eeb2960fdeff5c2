# One traced arrival on the lab's isolated CPU 1 (a guest script:
#   ISOL_LAB_KERNEL=6.12 cargo run -q -p isol-lab -- run bench/arrival-trace.sh).
# A thread created on CPU 0 enters isolation on CPU 1 (isol's Spin wait, the watcher started
# first), while a tracing instance of its own records, for CPU 1: tick_stop, task switches,
# timers, interrupt vectors, softirqs and work items, and everywhere: migrations, wake-ups
# onto CPU 1 and the work queued for it. isol's watcher narrates its readings and decisions
# into the same buffer (ISOL_WAIT_MARKER), the thread marks its call and its return.
# Two rounds, printed from the first call on (each: arrival, 0.2 s, re-entry, 0.2 s) (a measurement: these
# tracepoints interrupt nothing isol promises, but they do cost the CPU its events).
set -e
echo -1 > /proc/sys/kernel/sched_rt_runtime_us
T=/sys/kernel/tracing
I=$T/instances/arrival
mkdir $I
echo 8192 > $I/buffer_size_kb
echo mono > $I/trace_clock
on() { echo "$2" > $I/events/$1/filter; echo 1 > $I/events/$1/enable; }
for e in timer/tick_stop timer/hrtimer_start timer/hrtimer_expire_entry timer/hrtimer_cancel \
         timer/timer_start timer/timer_expire_entry timer/timer_cancel \
         sched/sched_switch irq/softirq_entry irq/irq_handler_entry \
         workqueue/workqueue_execute_start; do
  on $e 'CPU == 1'
done
for e in $(ls $I/events/irq_vectors); do
  [ -d $I/events/irq_vectors/$e ] && on irq_vectors/$e 'CPU == 1'
done
# When isol's watcher (on CPU 0) runs and sleeps: a sched_switch of its own filter.
echo 1 > $I/events/sched/sched_switch/enable
echo 'CPU == 1 || prev_comm == "isol-watcher" || next_comm == "isol-watcher"' > $I/events/sched/sched_switch/filter
on sched/sched_migrate_task 'dest_cpu == 1 || orig_cpu == 1'
on sched/sched_wakeup 'target_cpu == 1'
on workqueue/workqueue_queue_work 'cpu == 1'
echo 1 > $I/tracing_on
ISOL_WAIT_MARKER=$I/trace_marker isol-lab-guest arrive 1 --rounds 2 --methods spin --after 0.2 --mark $I/trace_marker
echo 0 > $I/tracing_on
# Both rounds: the first is a process's first enter (its watcher already started).
awk '/arrive: spin called/ {n++} n >= 1' $I/trace
