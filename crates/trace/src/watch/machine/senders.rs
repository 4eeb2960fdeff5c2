//! The events that name a culprit for a watched CPU from another CPU: IPI sends, work
//! queued, wakeups, the kernel stacks that follow them, and what they need to name the
//! sender (task names, proxies, timer expiries).

use super::*;

/// Kernel stacks start inside the tracing code; those frames name no culprit.
fn strip_tracing_frames(mut names: Vec<String>) -> Vec<String> {
    let n = names
        .iter()
        .take_while(|f| f.starts_with("trace_event_raw_event") || f.starts_with("perf_trace"))
        .count();
    names.drain(..n);
    names
}

/// Functions that call the handler of an interrupt, softirq, timer or IPI: in a stack,
/// innermost first, the frame before the innermost of them is the handler.
const DISPATCHERS: [&str; 8] = [
    "__handle_irq_event_percpu",
    "__hrtimer_run_queues",
    "call_timer_fn",
    "tasklet_action_common",
    "irq_work_single",
    "__flush_smp_call_function_queue",
    "handle_softirqs",
    "__do_softirq",
];

/// Functions a handler calls last, which a compiled tail call leaves in the handler's
/// place (`process_timeout` ends in `wake_up_process`): they name no handler.
const TAIL_CALLED: [&str; 3] = ["try_to_wake_up", "wake_up_process", "wake_up_state"];

/// The handler a stack (innermost first) ran in: the frame called by the innermost
/// dispatcher (`vring_interrupt` under `__handle_irq_event_percpu`, `net_rx_action` under
/// `handle_softirqs`).
fn handler(names: &[String]) -> Option<String> {
    let i = names
        .iter()
        .position(|n| DISPATCHERS.contains(&n.as_str()))?;
    let h = names.get(i.checked_sub(1)?)?;
    (!TAIL_CALLED.contains(&h.as_str())).then(|| h.clone())
}

impl Machine {
    /// Why an IPI that arrived at `at` has no sender.
    pub(super) fn why_untraced(&self, at: u64) -> String {
        if !self.ipi_events {
            "this kernel has no ipi_send_cpu/ipi_send_cpumask events".into()
        } else if self
            .first_ts
            .is_none_or(|t| at.saturating_sub(t) < EARLY_NS)
        {
            "sent before the watch started".into()
        } else {
            "no send event was recorded: the sending CPU was not tracing yet (a CPU \
             coming online), or the event was lost"
                .into()
        }
    }

    pub(super) fn comm(&mut self, pid: i32, cpu: u32) -> String {
        if pid == 0 {
            return format!("swapper/{cpu}");
        }
        if let Some(c) = self.comms.get(&pid) {
            return c.clone();
        }
        let c = self.tasks.comm(pid).unwrap_or_else(|| "?".to_string());
        self.comms.insert(pid, c.clone());
        c
    }

    pub(super) fn sender(
        &mut self,
        e: &Event,
        action: &str,
        callsite: u64,
        callback: u64,
    ) -> Sender {
        let context = if e.flags & FLAG_NMI != 0 {
            "nmi"
        } else if e.flags & FLAG_HARDIRQ != 0 {
            "irq"
        } else if e.flags & FLAG_SOFTIRQ != 0 {
            "softirq"
        } else {
            "task"
        };
        Sender {
            cpu: e.cpu,
            pid: e.pid,
            comm: self.comm(e.pid, e.cpu),
            context: context.to_string(),
            action: action.to_string(),
            callsite: self.symbols.name(callsite),
            callback: self.symbols.name(callback),
            handler: None,
            stack: Vec::new(),
            on_behalf: self.proxies.get(&e.pid).cloned(),
            place: self.place_of(e.pid),
        }
    }

    /// Handle events that name a culprit for another CPU. Returns true if consumed.
    pub(super) fn sender_event(&mut self, e: &Event) -> bool {
        match &e.what {
            What::IpiCpu {
                target,
                callsite,
                callback,
            } => {
                if self.targets.contains(*target) {
                    let t = CpuSet::from_iter([*target]);
                    self.pending_ipi(e, &t, "ipi_send_cpu", *callsite, *callback);
                }
                true
            }
            What::IpiMask {
                targets,
                callsite,
                callback,
            } => {
                let t = targets.intersection(&self.targets);
                if !t.is_empty() {
                    self.pending_ipi(e, &t, "ipi_send_cpumask", *callsite, *callback);
                }
                true
            }
            What::Queue {
                work,
                function,
                cpu,
            } => {
                if self.symbols.lookup(*function).map(|(n, _)| n) == Some(PROXY_WORK) {
                    let b = Behalf {
                        cpu: e.cpu,
                        pid: e.pid,
                        comm: self.comm(e.pid, e.cpu),
                        function: PROXY_WORK.into(),
                        place: self.place_of(e.pid),
                    };
                    remember(&mut self.proxy_work, *work, e.ts, b);
                }
                if *cpu >= 0 && self.targets.contains(*cpu as u32) {
                    let s = self.sender(e, "queue_work", 0, *function);
                    remember(&mut self.work, *work, e.ts, s);
                    self.last_sender.insert(e.cpu, LastSender::Work(*work));
                }
                true
            }
            What::Wakeup {
                pid,
                comm,
                target_cpu,
            } => {
                self.comms.insert(*pid, comm_str(comm));
                if *target_cpu >= 0 && self.targets.contains(*target_cpu as u32) && e.pid != *pid {
                    // In the timer interrupt, right after a sleeper's hrtimer expired there.
                    let timer = match self.timer_wakeups.get(&e.cpu) {
                        Some(&(t, func))
                            if e.flags & FLAG_HARDIRQ != 0
                                && e.ts.saturating_sub(t) < TIMER_WAKEUP_NS =>
                        {
                            func
                        }
                        _ => 0,
                    };
                    let s = self.sender(e, "wakeup", timer, 0);
                    remember(&mut self.wakeups, *pid, e.ts, s);
                    self.last_sender.insert(e.cpu, LastSender::Wakeup(*pid));
                }
                true
            }
            // Proxy work starting and ending elsewhere: whom the kworker works for.
            What::WorkStart { work, .. } if !self.targets.contains(e.cpu) => {
                if let Some((_, b)) = self.proxy_work.remove(work) {
                    self.proxies.insert(e.pid, b);
                }
                true
            }
            What::WorkEnd { .. } => {
                self.proxies.remove(&e.pid);
                true
            }
            What::Rename { pid, comm } => {
                self.comms.insert(*pid, comm_str(comm));
                true
            }
            // A sleeper's timer expiring elsewhere: the wakeup that follows names it.
            What::Hrtimer(func) if !self.targets.contains(e.cpu) => {
                self.timer_wakeups.insert(e.cpu, (e.ts, *func));
                true
            }
            What::Stack(addrs) => {
                let names = strip_tracing_frames(
                    addrs.iter().filter_map(|&a| self.symbols.name(a)).collect(),
                );
                let handler = handler(&names);
                let keep = if self.stacks { names } else { Vec::new() };
                let attach = |s: &mut Sender| {
                    if s.context != "task" {
                        s.handler.clone_from(&handler);
                    }
                    s.stack.clone_from(&keep);
                };
                match self.last_sender.remove(&e.cpu) {
                    Some(LastSender::Ipi(seq)) => {
                        for st in self.cpus.values_mut() {
                            for p in st.ipis.iter_mut().filter(|p| p.seq == seq) {
                                attach(&mut p.sender);
                            }
                        }
                    }
                    Some(LastSender::Work(w)) => {
                        if let Some((_, s)) = self.work.get_mut(&w) {
                            attach(s);
                        }
                    }
                    Some(LastSender::Wakeup(pid)) => {
                        if let Some((_, s)) = self.wakeups.get_mut(&pid) {
                            attach(s);
                        }
                    }
                    None => {}
                }
                true
            }
            _ => false,
        }
    }

    fn pending_ipi(&mut self, e: &Event, targets: &CpuSet, action: &str, site: u64, cb: u64) {
        self.seq += 1;
        let seq = self.seq;
        let sender = self.sender(e, action, site, cb);
        for t in targets.iter() {
            let st = self.cpus.entry(t).or_default();
            while st.ipis.len() >= PENDING_MAX
                || st
                    .ipis
                    .front()
                    .is_some_and(|p| e.ts.saturating_sub(p.ts) > PENDING_TTL_NS)
            {
                st.ipis.pop_front();
            }
            st.ipis.push_back(PendingIpi {
                ts: e.ts,
                seq,
                reschedule: cb == 0,
                sender: sender.clone(),
            });
        }
        self.last_sender.insert(e.cpu, LastSender::Ipi(seq));
    }
}
