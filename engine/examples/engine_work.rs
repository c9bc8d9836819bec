//! The engine driven as the runtime drives it, for instruction counts (valgrind
//! --tool=callgrind) of its own work, free of the noise of spawning: N services booted
//! (each spawn answered at once), then R crashes and restarts of one, then (with
//! `shutdown`) a shutdown with every kill answered by an exit; next_deadline() after
//! every input, as the main loop asks. Usage: `engine_work N R [shutdown]`.
use ember_engine::engine::{Action, Engine, Input};
use ember_engine::model::Exit;
use ember_engine::spec::{RestartPolicy, ServiceSpec};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

struct Rt {
    engine: Engine,
    now: Duration,
    next_pid: i32,
    pids: BTreeMap<String, i32>,
    inputs: u64,
    all_stopped: bool,
}

impl Rt {
    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Spawn { name, run, .. } => {
                    self.next_pid += 1;
                    self.pids.insert(name.clone(), self.next_pid);
                    let more = self.handle(Input::Spawned {
                        name,
                        run,
                        pid: self.next_pid,
                    });
                    queue.extend(more);
                }
                Action::Kill {
                    name,
                    pid: Some(pid),
                    ..
                } => {
                    let more = self.handle(Input::Exited {
                        name,
                        pid,
                        exit: Exit::Signal(Signal::SIGTERM),
                        oom_killed: false,
                    });
                    queue.extend(more);
                }
                Action::AllStopped => self.all_stopped = true,
                _ => {}
            }
        }
    }

    fn handle(&mut self, input: Input) -> Vec<Action> {
        self.inputs += 1;
        let actions = self.engine.handle(input, self.now);
        std::hint::black_box(self.engine.next_deadline());
        actions
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| -> usize {
        match args.get(i).and_then(|a| a.parse().ok()) {
            Some(n) => n,
            None => {
                eprintln!("usage: engine_work SERVICES RESTARTS [shutdown]");
                std::process::exit(2)
            }
        }
    };
    let (n, restarts) = (number(1), number(2));
    let shutdown = args.get(3).is_some_and(|a| a == "shutdown");
    let mut specs = BTreeMap::new();
    for i in 0..n {
        let mut s = ServiceSpec::new(&format!("s{i:05}"), &["/usr/bin/app"]);
        s.restart = RestartPolicy::Always;
        s.restart_delay = Duration::ZERO;
        s.restart_delay_max = Duration::ZERO;
        s.start_limit = 0;
        specs.insert(s.name.to_string(), s);
    }
    let mut adapter = ServiceSpec::new("ember-mqtt", &["/usr/bin/app"]);
    adapter.linger = true;
    specs.insert(adapter.name.to_string(), adapter);
    let mut rt = Rt {
        engine: Engine::new(specs, Duration::ZERO),
        now: Duration::ZERO,
        next_pid: 100,
        pids: BTreeMap::new(),
        inputs: 0,
        all_stopped: false,
    };
    let actions = rt.engine.boot(rt.now);
    rt.execute(actions);
    let one = format!("s{:05}", n / 2);
    for _ in 0..restarts {
        let pid = rt.pids[&one];
        let a = rt.handle(Input::Exited {
            name: one.clone(),
            pid,
            exit: Exit::Code(1),
            oom_killed: false,
        });
        rt.execute(a);
        rt.now = rt.engine.next_deadline().expect("a restart");
        let a = rt.handle(Input::Tick);
        rt.execute(a);
    }
    if shutdown {
        let a = rt.handle(Input::Shutdown);
        rt.execute(a);
    }
    assert_eq!(rt.all_stopped, shutdown, "every service stopped");
    eprintln!("{} inputs", rt.inputs);
}
