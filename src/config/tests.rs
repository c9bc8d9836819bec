//! Loader tests: config trees written to temp dirs, checked for the exact problems.

use super::*;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A config tree in its own temp dir, removed when dropped.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "ember-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(&self) -> Loaded {
        load(&self.root.join("ember.toml"))
    }

    /// Every problem as `ember check` prints it, with paths relative to the tree.
    fn problems(&self) -> Vec<String> {
        self.lines(&self.load())
    }

    fn lines(&self, loaded: &Loaded) -> Vec<String> {
        loaded
            .problems
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Ok(rel) = p.file.strip_prefix(&self.root) {
                    p.file = rel.to_owned();
                }
                p.to_string()
            })
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Where `needle` first starts in `text`, as 1-based line:col, to check that a problem
/// points at the token it is about.
fn at(text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let (line, col) = super::position::line_col(text, offset);
    format!("{line}:{col}")
}

const FULL_MAIN: &str = r#"[system]
device = "gateway-7"
services_dir = "conf.d"

[log]
level = "ember=debug"

[control]
socket = "/run/ember-test.sock"

[service.app]
command = ["/bin/sh", "-c", "exec app"]
type = "notify"
user = "root"
group = "root"
env = { MODE = "prod", PATH = "/usr/bin:/bin" }
workdir = "/tmp"
requires = ["db"]
wants = ["net"]
after = ["clock"]
restart = "always"
restart_delay = "250ms"
restart_delay_max = "1m"
start_limit = 3
start_limit_interval = "30s"
stop_signal = "SIGINT"
stop_timeout = "10s"
ready = { notify = true }
ready_timeout = "20s"
watchdog = "5s"
stdout = "console"
stderr = "/var/log/app.err"
enabled = false
on_failure = "reboot"

[service.clock]
command = ["/bin/sh"]
"#;

const FULL_DB: &str = r#"command = ["/bin/sh", "-c", "db --daemon"]
type = "forking"
pid_file = "/run/db.pid"
stop_signal = "TERM"
stop_timeout = "1s"
stdout = "null"
on_failure = "poweroff"
"#;

const FULL_NET: &str = r#"command = ["/bin/sh", "-c", "ip link set eth0 up"]
type = "oneshot"
restart = "always"
"#;

#[test]
fn a_full_example_parses_to_the_expected_specs() {
    let tree = Tree::new();
    tree.write("ember.toml", FULL_MAIN);
    tree.write("conf.d/db.toml", FULL_DB);
    tree.write("conf.d/net.toml", FULL_NET);
    let loaded = tree.load();
    assert_eq!(loaded.problems, vec![]);
    let config = loaded.config.expect("a valid configuration");
    assert_eq!(config.path, tree.root.join("ember.toml"));
    assert_eq!(
        config.system,
        SystemConfig::defaults("gateway-7".into(), tree.root.join("conf.d"))
    );
    assert_eq!(config.log.level.as_deref(), Some("ember=debug"));
    assert_eq!(config.control.socket, PathBuf::from("/run/ember-test.sock"));
    assert_eq!(
        config.services.keys().collect::<Vec<_>>(),
        ["app", "clock", "db", "net"]
    );

    let mut app = ServiceSpec::new("app", &["/bin/sh", "-c", "exec app"]);
    app.kind = ServiceType::Notify;
    app.user = Some("root".into());
    app.group = Some("root".into());
    app.env = [("MODE", "prod"), ("PATH", "/usr/bin:/bin")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    app.workdir = Some("/tmp".into());
    app.requires = vec!["db".into()];
    app.wants = vec!["net".into()];
    app.after = vec!["clock".into()];
    app.restart = RestartPolicy::Always;
    app.restart_delay = Duration::from_millis(250);
    app.restart_delay_max = Duration::from_secs(60);
    app.start_limit = 3;
    app.start_limit_interval = Duration::from_secs(30);
    app.stop_signal = Signal::SIGINT;
    app.stop_timeout = Duration::from_secs(10);
    app.ready = Readiness::Notify;
    app.ready_timeout = Some(Duration::from_secs(20));
    app.watchdog = Some(Duration::from_secs(5));
    app.stdout = Output::Console;
    app.stderr = Output::File("/var/log/app.err".into());
    app.enabled = false;
    app.on_failure = FailureAction::Reboot;
    assert_eq!(config.services["app"], app);

    // Only a command: every default.
    assert_eq!(
        config.services["clock"],
        ServiceSpec::new("clock", &["/bin/sh"])
    );

    let mut db = ServiceSpec::new("db", &["/bin/sh", "-c", "db --daemon"]);
    db.kind = ServiceType::Forking;
    db.pid_file = Some("/run/db.pid".into());
    db.ready = Readiness::PidFile;
    db.stop_signal = Signal::SIGTERM;
    db.stop_timeout = Duration::from_secs(1);
    db.stdout = Output::Null;
    db.on_failure = FailureAction::Poweroff;
    assert_eq!(config.services["db"], db);

    // A oneshot is ready when it exits, has no ready timeout by default, and "always"
    // only means "also after a failure".
    let mut net = ServiceSpec::new("net", &["/bin/sh", "-c", "ip link set eth0 up"]);
    net.kind = ServiceType::Oneshot;
    net.ready = Readiness::Exit;
    net.ready_timeout = None;
    net.restart = RestartPolicy::OnFailure;
    assert_eq!(config.services["net"], net);
}

#[test]
fn an_empty_main_file_has_the_defaults() {
    let tree = Tree::new();
    tree.write("ember.toml", "");
    let loaded = tree.load();
    assert_eq!(loaded.problems, vec![]);
    let config = loaded.config.unwrap();
    assert_eq!(config.system.device, hostname());
    assert_eq!(config.system.services_dir, tree.root.join("services.d"));
    assert_eq!(config.log, LogConfig::default());
    assert_eq!(config.control.socket, PathBuf::from(DEFAULT_SOCKET));
    assert!(config.services.is_empty());
}

#[test]
fn every_readiness_kind() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.log]
command = ["/bin/sh"]
ready = { log = "listening on \\d+" }
[service.delay]
command = ["/bin/sh"]
ready = { delay = "2s" }
ready_timeout = "0"
[service.notify]
command = ["/bin/sh"]
ready = { notify = true }
[service.tcp]
command = ["/bin/sh"]
ready = { tcp = "127.0.0.1:1883" }
[service.file]
command = ["/bin/sh"]
ready = { file = "/run/file.ready" }
[service.exec]
command = ["/bin/sh"]
ready = { exec = ["/bin/true", "arg"] }
[service.spawned]
command = ["/bin/sh"]
ready = { notify = false }
"#,
    );
    let loaded = tree.load();
    assert_eq!(loaded.problems, vec![]);
    let services = loaded.config.unwrap().services;
    let ready = |name: &str| services[name].ready.clone();
    assert_eq!(ready("log"), Readiness::Log(r"listening on \d+".into()));
    assert_eq!(ready("delay"), Readiness::Delay(Duration::from_secs(2)));
    assert_eq!(services["delay"].ready_timeout, None);
    assert_eq!(ready("notify"), Readiness::Notify);
    assert_eq!(ready("tcp"), Readiness::Tcp("127.0.0.1:1883".into()));
    assert_eq!(ready("file"), Readiness::File("/run/file.ready".into()));
    assert_eq!(
        ready("exec"),
        Readiness::Exec(vec!["/bin/true".into(), "arg".into()])
    );
    assert_eq!(ready("spawned"), Readiness::Spawned);
    assert_eq!(
        services["tcp"].ready_timeout,
        Some(service::DEFAULT_READY_TIMEOUT)
    );
}

#[test]
fn restart_delay_max_is_at_least_restart_delay() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/sh\"]\nrestart_delay = \"1m\"\nrestart_delay_max = \"1s\"\n",
    );
    let a = &tree.load().config.unwrap().services["a"];
    assert_eq!(a.restart_delay, Duration::from_secs(60));
    assert_eq!(a.restart_delay_max, Duration::from_secs(60));
}

#[test]
fn services_dir_defaults_to_services_d_beside_the_main_file() {
    let tree = Tree::new();
    tree.write("ember.toml", "[service.main]\ncommand = [\"/bin/sh\"]\n");
    tree.write("services.d/web.toml", "command = [\"/bin/sh\"]\n");
    // Only *.toml files are services.
    tree.write("services.d/README", "not a service\n");
    tree.write("services.d/old.toml.bak", "not = \"a service\"\n");
    let config = tree.load().config.unwrap();
    assert_eq!(config.system.services_dir, tree.root.join("services.d"));
    assert_eq!(config.services.keys().collect::<Vec<_>>(), ["main", "web"]);
    assert_eq!(
        config.services["web"],
        ServiceSpec::new("web", &["/bin/sh"])
    );
}

#[test]
fn a_relative_services_dir_is_beside_the_main_file() {
    let tree = Tree::new();
    tree.write("ember.toml", "[system]\nservices_dir = \"conf/units\"\n");
    tree.write("conf/units/web.toml", "command = [\"/bin/sh\"]\n");
    // Ignored: not the services_dir any more.
    tree.write("services.d/other.toml", "command = [\"/bin/sh\"]\n");
    let config = tree.load().config.unwrap();
    assert_eq!(config.system.services_dir, tree.root.join("conf/units"));
    assert_eq!(config.services.keys().collect::<Vec<_>>(), ["web"]);
}

#[test]
fn an_absolute_services_dir_is_used_as_is() {
    let tree = Tree::new();
    let elsewhere = Tree::new();
    elsewhere.write("web.toml", "command = [\"/bin/sh\"]\n");
    tree.write(
        "ember.toml",
        &format!("[system]\nservices_dir = {:?}\n", elsewhere.root),
    );
    tree.write("services.d/other.toml", "command = [\"/bin/sh\"]\n");
    let config = tree.load().config.unwrap();
    assert_eq!(config.system.services_dir, elsewhere.root);
    assert_eq!(config.services.keys().collect::<Vec<_>>(), ["web"]);
}

#[test]
fn a_missing_services_dir_is_no_error_but_an_unreadable_one_is() {
    let tree = Tree::new();
    tree.write("ember.toml", "[system]\nservices_dir = \"nowhere\"\n");
    assert_eq!(tree.problems(), Vec::<String>::new());

    // Unreadable: `ember check` fails, but the services of the main file still boot.
    tree.write(
        "ember.toml",
        "[system]\nservices_dir = \"ember.toml\"\n[service.a]\ncommand = [\"/bin/sh\"]\n",
    );
    let loaded = tree.load();
    assert_eq!(
        tree.lines(&loaded),
        ["ember.toml: cannot read services_dir: Not a directory (os error 20); none of its services is loaded"]
    );
    assert_eq!(loaded.problems[0].severity, Severity::Runtime);
    assert!(loaded.config.unwrap().services.contains_key("a"));
}

#[test]
fn what_check_fails_a_reload_refuses_and_a_warning_does_not() {
    let tree = Tree::new();
    // A Runtime problem alone: the boot's configuration, but not `checked`.
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/nonexistent/prog\"]\n",
    );
    let loaded = tree.load();
    assert!(loaded.config.is_some());
    assert_eq!(loaded.errors().count(), 0);
    let failing: Vec<String> = loaded.failing().map(|p| p.to_string()).collect();
    let refused = loaded.checked().expect_err("refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].to_string(), failing[0]);
    assert!(failing[0].contains("/nonexistent/prog"), "{failing:?}");
    // An error: refused too.
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/sh\"]\nrestart = \"x\"\n",
    );
    assert_eq!(tree.load().checked().err().map(|p| p.len()), Some(1));
    // A warning alone: taken.
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/sh\", \"{instance}\"]\n",
    );
    let loaded = tree.load();
    assert!(loaded
        .problems
        .iter()
        .any(|p| p.severity == Severity::Warning));
    assert_eq!(loaded.failing().count(), 0);
    assert!(loaded.checked().is_ok());
}

#[test]
fn a_missing_main_file() {
    let tree = Tree::new();
    assert_eq!(
        tree.problems(),
        ["ember.toml: cannot read: No such file or directory (os error 2)"]
    );
}

#[test]
fn a_service_defined_in_the_main_file_and_in_services_d() {
    let tree = Tree::new();
    tree.write("ember.toml", "[service.web]\ncommand = [\"/bin/sh\"]\n");
    tree.write("services.d/web.toml", "command = [\"/bin/sh\"]\n");
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    assert_eq!(
        tree.lines(&loaded),
        [format!(
            "services.d/web.toml:1:1: service \"web\" is defined twice (also in {}); keep one",
            tree.root.join("ember.toml").display()
        )]
    );

    // The errors of the second definition are shown too.
    tree.write(
        "services.d/web.toml",
        "command = [\"/bin/sh\"]\nrestart = \"sometimes\"\nstdout = \"web.log\"\n",
    );
    tree.write(
        "services.d/db.toml",
        "command = [\"/bin/sh\"]\nstdout = \"db.log\"\n",
    );
    assert_eq!(
        tree.problems(),
        [
            "services.d/db.toml:2:10: service \"db\": output \"db.log\" must be \"log\", \"console\", \"null\" or an absolute file path".to_owned(),
            format!(
                "services.d/web.toml:1:1: service \"web\" is defined twice (also in {}); keep one",
                tree.root.join("ember.toml").display()
            ),
            "services.d/web.toml:2:11: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`".to_owned(),
        ]
    );
}

#[test]
fn toml_syntax_errors() {
    let tree = Tree::new();
    // Both errors in the file, not only the first.
    tree.write("ember.toml", "[system\ndevice = \"x\"\n[log]\nlevel = \n");
    tree.write("services.d/web.toml", "command = [\"/bin/sh\"\n");
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:1:8: unclosed table, expected `]`",
            "ember.toml:4:9: string values must be quoted, expected literal string",
            // services.d is still checked.
            "services.d/web.toml:1:21: unclosed array, expected `]`",
        ]
    );

    tree.write("ember.toml", "");
    assert_eq!(
        tree.problems(),
        ["services.d/web.toml:1:21: unclosed array, expected `]`"]
    );

    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/sh\"]\n[service.a]\n[service.b]\nenabled = true\nenabled = false\n",
    );
    tree.write("services.d/web.toml", "command = [\"/bin/sh\"]\n");
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:3:10: duplicate key; keep one of the two",
            "ember.toml:6:1: duplicate key; keep one of the two",
        ]
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[system]
devise = "gw"
[log]
lvl = "debug"
[control]
sock = "/run/x.sock"
[servce.a]
command = ["/bin/sh"]
[service.a]
command = ["/bin/sh"]
  restrat = "always"
[service.b]
command = ["/bin/sh"]
ready = { log = "up", timeout = "5s" }
"#,
    );
    tree.write(
        "services.d/c.toml",
        "command = [\"/bin/sh\"]\nuser_name = \"x\"\n",
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:2:1: unknown field `devise`, expected one of `device`, `services_dir`, `hostname`, `ctrl_alt_del`, `shutdown_timeout`, `rescue_shell`, `metrics_interval`, `log_dir`, `watchdog`",
            "ember.toml:4:1: unknown field `lvl`, expected `level` or `output`",
            "ember.toml:6:1: unknown field `sock`, expected `socket` or `allow`",
            "ember.toml:7:2: unknown section \"servce\"; expected system, log, control, mqtt, dbus, service",
            "ember.toml:11:3: unknown field `restrat`, expected one of `command`, `type`, `pid_file`, `user`, `group`, `env`, `workdir`, `requires`, `wants`, `after`, `restart`, `restart_delay`, `restart_delay_max`, `start_limit`, `start_limit_interval`, `stop_signal`, `stop_timeout`, `ready`, `ready_timeout`, `watchdog`, `stdout`, `stderr`, `enabled`, `on_failure`, `schedule`, `instances`, `limits`, `memory_max`, `cpu_weight`, `pids_max`, `oom_score_adjust`",
            "ember.toml:14:23: unknown field `timeout`, expected one of `log`, `delay`, `notify`, `tcp`, `file`, `exec`",
            "services.d/c.toml:2:1: unknown field `user_name`, expected one of `command`, `type`, `pid_file`, `user`, `group`, `env`, `workdir`, `requires`, `wants`, `after`, `restart`, `restart_delay`, `restart_delay_max`, `start_limit`, `start_limit_interval`, `stop_signal`, `stop_timeout`, `ready`, `ready_timeout`, `watchdog`, `stdout`, `stderr`, `enabled`, `on_failure`, `schedule`, `instances`, `limits`, `memory_max`, `cpu_weight`, `pids_max`, `oom_score_adjust`",
        ]
    );
}

#[test]
fn bad_values() {
    let tree = Tree::new();
    // One bad value a table, each message on its own.
    tree.write(
        "ember.toml",
        r#"[system]
device = 7
[service.a]
command = "/bin/sh"
[service.b]
command = ["/bin/sh"]
type = "daemon"
[service.c]
command = ["/bin/sh"]
restart = "sometimes"
[service.d]
command = ["/bin/sh"]
on_failure = "halt"
[service.e]
command = ["/bin/sh"]
stop_timeout = "soon"
[service.f]
command = ["/bin/sh"]
start_limit = -1
[service.g]
command = ["/bin/sh"]
enabled = "yes"
[service.h]
command = ["/bin/sh"]
env = { LEVEL = 3 }
[service.i]
command = ["/bin/sh"]
stdout = "app.log"
[service.j]
command = ["/bin/sh"]
ready = { tcp = "localhost" }
[service.k]
command = ["/bin/sh"]
ready = { log = "up", delay = "1s" }
[service.l]
command = ["/bin/sh"]
ready = {}
[service.m]
command = ["/bin/sh"]
watchdog = "10s"
[service.n]
command = []
[service.o]
type = "simple"
[service.p]
command = ["/bin/sh", "-c", "a\u0000b"]
"#,
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:2:10: invalid type: integer `7`, expected a string",
            "ember.toml:4:11: invalid type: string \"/bin/sh\", expected an array",
            "ember.toml:7:8: unknown variant `daemon`, expected one of `simple`, `oneshot`, `notify`, `forking`",
            "ember.toml:10:11: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`",
            "ember.toml:13:14: unknown variant `halt`, expected one of `none`, `reboot`, `poweroff`",
            "ember.toml:16:16: invalid duration \"soon\" (expected number at 0); write e.g. \"250ms\", \"5s\", \"2m\"",
            "ember.toml:19:15: invalid value: integer `-1`, expected u32",
            "ember.toml:22:11: invalid type: string \"yes\", expected a boolean",
            "ember.toml:25:17: invalid type: integer `3`, expected a string",
            "ember.toml:28:10: service \"i\": output \"app.log\" must be \"log\", \"console\", \"null\" or an absolute file path",
            "ember.toml:31:9: service \"j\": ready tcp \"localhost\" is not an address such as \"127.0.0.1:1883\"",
            "ember.toml:34:9: service \"k\": ready takes exactly one of log, delay, notify, tcp, file, exec",
            "ember.toml:37:9: service \"l\": ready needs one of log, delay, notify, tcp, file, exec",
            "ember.toml:40:12: service \"m\": watchdog needs sd_notify; set type = \"notify\" or ready = { notify = true }",
            "ember.toml:42:11: service \"n\": command is empty; give the program and its arguments",
            "ember.toml:43:10: service \"o\" has no command; add e.g. command = [\"/usr/bin/app\", \"--flag\"]",
            "ember.toml:46:11: service \"p\": argument 2 of the command (\"a\\0b\") contains a NUL byte, which no program can be given",
        ]
    );
}

#[test]
fn type_rules() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
type = "forking"
[service.b]
command = ["/bin/sh"]
type = "oneshot"
ready = { delay = "1s" }
[service.c]
command = ["/bin/sh"]
type = "notify"
ready = { log = "up" }
[service.d]
command = ["/bin/sh"]
type = "notify"
watchdog = "0"
"#,
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:1:10: service \"a\" is type = \"forking\" but has no pid_file: ember must know the daemon's pid; add e.g. pid_file = \"/run/a.pid\"",
            "ember.toml:7:9: service \"b\": ready does not apply to type = \"oneshot\" (a oneshot is ready when it exits 0); use type = \"simple\" with ready",
            "ember.toml:11:9: service \"c\": ready does not apply to type = \"notify\" (a notify service is ready when it sends READY=1); use type = \"simple\" with ready",
            "ember.toml:15:12: service \"d\": watchdog must be longer than 0; remove it for none",
        ]
    );
}

#[test]
fn unknown_signals() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
stop_signal = "SIGSTOPP"
[service.b]
command = ["/bin/sh"]
stop_signal = "99"
[service.ok1]
command = ["/bin/sh"]
stop_signal = "hup"
[service.ok2]
command = ["/bin/sh"]
stop_signal = "9"
"#,
    );
    let loaded = tree.load();
    assert_eq!(
        tree.lines(&loaded),
        [
            "ember.toml:3:15: unknown signal \"SIGSTOPP\"; write e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\"",
            "ember.toml:6:15: unknown signal \"99\"; write e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\"",
        ]
    );
}

#[test]
fn unknown_dependencies() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
requires = ["b", "ghost"]
wants = ["maybe"]
after = ["b", "later"]
[service.b]
command = ["/bin/sh"]
"#,
    );
    tree.write(
        "services.d/c.toml",
        "command = [\"/bin/sh\"]\nrequires = [\"a\", \"phantom\"]\n",
    );
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    assert_eq!(
        tree.lines(&loaded),
        [
            "ember.toml:3:18: service \"a\" requires \"ghost\", which is not defined; define it or remove it from requires",
            // Like systemd's Wants= and After=: only a warning.
            "ember.toml:4:10: warning: service \"a\" wants \"maybe\", which is not defined; define it or remove it from wants",
            "ember.toml:5:15: warning: service \"a\" after \"later\", which is not defined; define it or remove it from after",
            "services.d/c.toml:2:18: service \"c\" requires \"phantom\", which is not defined; define it or remove it from requires",
        ]
    );

    // Warnings alone keep the configuration.
    tree.write(
        "services.d/c.toml",
        "command = [\"/bin/sh\"]\nwants = [\"phantom\"]\n",
    );
    tree.write("ember.toml", "");
    let loaded = tree.load();
    assert_eq!(loaded.problems.len(), 1);
    assert_eq!(loaded.problems[0].severity, Severity::Warning);
    assert!(loaded.config.is_some());
}

#[test]
fn dependency_cycles() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
requires = ["b"]
[service.b]
command = ["/bin/sh"]
after = ["a"]
[service.x]
command = ["/bin/sh"]
wants = ["y"]
[service.self]
command = ["/bin/sh"]
after = ["self"]
"#,
    );
    tree.write(
        "services.d/y.toml",
        "command = [\"/bin/sh\"]\nrequires = [\"z\"]\n",
    );
    tree.write(
        "services.d/z.toml",
        "command = [\"/bin/sh\"]\nafter = [\"x\"]\n",
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:3:13: dependency cycle: a -> b -> a; remove one of these dependencies",
            "ember.toml:9:10: dependency cycle: x -> y -> z -> x; remove one of these dependencies",
            "ember.toml:12:10: service \"self\" after itself; remove \"self\" from after",
        ]
    );
}

#[test]
fn commands_that_are_missing_or_not_executable() {
    let tree = Tree::new();
    let script = tree.write("bin/tool", "#!/bin/sh\n");
    let plain = tree.write("bin/data", "not a program\n");
    let orphan = tree.write("bin/orphan", "#!/nonexistent/python3\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&orphan, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A FIFO with x set: exec(2) refuses it as it refuses a directory.
    let fifo = tree.root.join("bin/fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tree.root.join("bin");
    tree.write(
        "ember.toml",
        &format!(
            r#"[service.missing]
command = ["/nonexistent/prog", "-x"]
[service.plain]
command = [{plain:?}]
[service.dir]
command = [{bin:?}]
[service.bare]
command = ["no-such-tool"]
env = {{ PATH = "/nonexistent:{bin}" }}
[service.found]
command = ["tool"]
env = {{ PATH = "/nonexistent:{bin}" }}
[service.orphan]
command = [{orphan:?}]
[service.fifo]
command = [{fifo:?}]
"#,
            bin = bin.display(),
        ),
    );
    let loaded = tree.load();
    // The program may live on a filesystem mounted later: `ember check` fails, a boot
    // does not.
    assert!(loaded
        .problems
        .iter()
        .all(|p| p.severity == Severity::Runtime));
    assert!(loaded.config.is_some());
    assert_eq!(
        tree.lines(&loaded),
        [
            "ember.toml:2:11: service \"missing\": command /nonexistent/prog does not exist; give the path of an installed program".to_owned(),
            format!("ember.toml:4:11: service \"plain\": command {} is not executable (chmod +x it)", plain.display()),
            format!("ember.toml:6:11: service \"dir\": command {} is a directory; give the path of a program", bin.display()),
            format!("ember.toml:8:11: service \"bare\": command \"no-such-tool\" is not found on PATH (/nonexistent:{}); give its absolute path", bin.display()),
            format!("ember.toml:14:11: service \"orphan\": command {}: its #! line names /nonexistent/python3, which does not exist; install it or correct that line", orphan.display()),
            format!("ember.toml:16:11: service \"fifo\": command {} is a FIFO, not a regular file", fifo.display()),
        ]
    );
}

#[test]
fn users_and_groups_that_do_not_exist() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
user = "ember-no-such-user"
group = "ember-no-such-group"
[service.b]
command = ["/bin/sh"]
user = "4242"
group = "4242"
"#,
    );
    let loaded = tree.load();
    assert!(loaded.config.is_some());
    assert_eq!(
        tree.lines(&loaded),
        [
            "ember.toml:3:8: service \"a\": user \"ember-no-such-user\" does not exist on this system; create it or give a numeric id",
            "ember.toml:4:9: service \"a\": group \"ember-no-such-group\" does not exist on this system; create it or give a numeric id",
        ]
    );
}

#[test]
fn invalid_service_names() {
    let tree = Tree::new();
    let long = "x".repeat(65);
    let longest = "y".repeat(64);
    tree.write(
        "ember.toml",
        &format!(
            r#"[service."a/b"]
command = ["/bin/sh"]
[service.{long}]
command = ["/bin/sh"]
[service.{longest}]
command = ["/bin/sh"]
[service."web-1.x@y_z"]
command = ["/bin/sh"]
"#
        ),
    );
    tree.write("services.d/bad name.toml", "command = [\"/bin/sh\"]\n");
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:1:10: invalid service name \"a/b\": '/' is not allowed (a name becomes a file name and an MQTT topic level, which '/' would split); use letters, digits and . _ @ -".to_owned(),
            format!("ember.toml:3:10: invalid service name \"{long}\": it is 65 characters long; the longest is 64 (it becomes a socket path, whose length the kernel limits)"),
            "services.d/bad name.toml: not loaded: the file name is the service's name, and invalid service name \"bad name\": ' ' is not allowed (a name becomes a file name, an MQTT topic level and a D-Bus path); use letters, digits and . _ @ -".to_owned(),
        ]
    );
}

/// Every name that would reach the file system as something other than the service's
/// own directory or socket is refused where it is written (found by hostile use: a
/// service named ".." had ember's own cgroup, and stopping it signalled ember).
#[test]
fn names_that_are_not_a_plain_path_component_are_refused_at_their_key() {
    let tree = Tree::new();
    let mut text = String::new();
    for name in [
        "..",
        ".",
        ".x",
        "-x",
        "cgroup.procs",
        "memory.max",
        "a+b",
        "a#",
        "$SYS",
    ] {
        text.push_str(&format!("[service.\"{name}\"]\ncommand = [\"/bin/sh\"]\n"));
    }
    text.push_str("[service.\"a\\nb\"]\ncommand = [\"/bin/sh\"]\n");
    text.push_str("[service.\"\"]\ncommand = [\"/bin/sh\"]\n");
    tree.write("ember.toml", &text);
    let loaded = tree.load();
    let lines = tree.lines(&loaded);
    assert_eq!(lines.len(), 11, "{lines:#?}");
    for (i, line) in lines.iter().enumerate() {
        // At the name's key, on one line.
        assert!(
            line.starts_with(&format!("ember.toml:{}:10: ", 2 * i + 1)),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
    assert!(loaded.config.is_none());
}

thread_local! {
    /// What [`after_listing`] does in this test's thread: nothing unless set.
    static AFTER_LISTING: std::cell::RefCell<Option<Box<dyn Fn()>>> = const { std::cell::RefCell::new(None) };
}

/// Called by the loader between its listing of services.d and the reading of its files.
pub(super) fn after_listing() {
    AFTER_LISTING.with(|hook| {
        if let Some(hook) = &*hook.borrow() {
            hook()
        }
    });
}

/// A file removed between the listing of services.d and its reading is a service
/// removed, as it would be a moment later (found by a hostile review: it was reported
/// as "a symlink to nothing", and a reload refused for it); a dangling symlink is still
/// one.
#[test]
fn a_services_d_file_removed_while_it_is_read_is_gone_not_dangling() {
    let tree = Tree::new();
    tree.write("ember.toml", "[service.main]\ncommand = [\"/bin/sh\"]\n");
    let gone = tree.write("services.d/gone.toml", "command = [\"/bin/sh\"]\n");
    std::os::unix::fs::symlink("nowhere.toml", tree.root.join("services.d/dangling.toml")).unwrap();
    AFTER_LISTING.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move || {
            let _ = std::fs::remove_file(&gone);
        }))
    });
    let loaded = tree.load();
    AFTER_LISTING.with(|hook| *hook.borrow_mut() = None);
    assert_eq!(
        tree.lines(&loaded),
        ["services.d/dangling.toml: service dangling not loaded: it is a symlink to nothing (a dangling link)"]
    );
    let config = loaded.config.expect("the rest loads");
    let names: Vec<&str> = config.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["dangling", "main"]);
}

/// services.d: editors' and package managers' leftovers are skipped; one file that
/// cannot be read is that file's problem, never a reason to drop every service.
#[test]
fn services_d_loads_regular_files_with_valid_names_and_survives_the_rest() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[service.main]\ncommand = [\"/bin/sh\"]\nrequires = [\"locked\"]\n",
    );
    tree.write("services.d/app.toml", "command = [\"/bin/sh\"]\n");
    // Leftovers, skipped without a word (a debug line).
    tree.write("services.d/.hidden.toml", "command = [\"/bin/sh\"]\n");
    tree.write("services.d/.app.toml.swp", "\0\0binary");
    tree.write("services.d/app.toml~", "old");
    tree.write("services.d/app.toml.bak", "old");
    tree.write("services.d/app.toml.dpkg-dist", "new");
    tree.write("services.d/app.toml.rpmnew", "new");
    symlink(
        "user@host.1234:1700000000",
        tree.root.join("services.d/.#app.toml"),
    )
    .unwrap();
    // Problems of their own file only.
    symlink("nowhere.toml", tree.root.join("services.d/dangling.toml")).unwrap();
    std::fs::create_dir_all(tree.root.join("services.d/adir.toml")).unwrap();
    nix::unistd::mkfifo(
        &tree.root.join("services.d/fifo.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    tree.write("services.d/binary.toml", "");
    std::fs::write(
        tree.root.join("services.d/binary.toml"),
        b"command = [\"\xff\"]\n",
    )
    .unwrap();
    let locked = tree.write("services.d/locked.toml", "command = [\"/bin/sh\"]\n");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    tree.write("services.d/my app.toml", "command = [\"/bin/sh\"]\n");

    let loaded = tree.load();
    let lines = tree.lines(&loaded);
    assert!(
        loaded
            .problems
            .iter()
            .all(|p| p.severity == Severity::Runtime),
        "{lines:#?}"
    );
    let config = loaded.config.expect("the rest of the configuration boots");
    let as_root = nix::unistd::geteuid().is_root();
    let mut expected = vec![
        "services.d/adir.toml: service adir not loaded: it is not a regular file",
        "services.d/binary.toml: service binary not loaded: cannot read it: it is not UTF-8 text: byte 0xff at line 1, column 13; save it as UTF-8",
        "services.d/dangling.toml: service dangling not loaded: it is a symlink to nothing (a dangling link)",
        "services.d/fifo.toml: service fifo not loaded: it is not a regular file",
    ];
    if !as_root {
        expected.push("services.d/locked.toml: service locked not loaded: cannot read it: Permission denied (os error 13)");
    }
    expected.push("services.d/my app.toml: not loaded: the file name is the service's name, and invalid service name \"my app\": ' ' is not allowed (a name becomes a file name, an MQTT topic level and a D-Bus path); use letters, digits and . _ @ -");
    assert_eq!(lines, expected);
    let names: Vec<&str> = config.services.keys().map(String::as_str).collect();
    // The unreadable ones are there, as services that fail at start with the reason.
    assert_eq!(
        names,
        ["adir", "app", "binary", "dangling", "fifo", "locked", "main"]
    );
    let dangling = &config.services["dangling"];
    assert!(dangling
        .load_error
        .as_deref()
        .is_some_and(|e| e.contains("dangling.toml cannot be loaded: it is a symlink to nothing")));
    assert_eq!(config.services["app"].load_error, None);
}

#[test]
fn service_must_be_a_table_of_tables() {
    let tree = Tree::new();
    tree.write("ember.toml", "service = 1\n");
    assert_eq!(
        tree.problems(),
        ["ember.toml:1:11: \"service\" must be a table of services: [service.NAME]"]
    );
}

#[test]
fn errors_in_different_tables_and_files_are_all_reported() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[system]
devise = "gw"
[log]
level = 3
[service.a]
command = ["/bin/sh"]
restart = "sometimes"
[service.b]
command = ["/bin/sh"]
stop_signal = "SIGNOPE"
requires = ["ghost"]
[service.c]
command = ["/bin/sh"]
requires = ["ghost"]
"#,
    );
    tree.write(
        "services.d/d.toml",
        "command = [\"/bin/sh\"]\nrestart_delay = \"5 parsecs\"\n",
    );
    tree.write(
        "services.d/e.toml",
        "command = [\"/bin/sh\"]\nready = { tcp = \"nowhere\" }\n",
    );
    tree.write("services.d/f.toml", "command = [\"/bin/sh\"\n");
    tree.write(
        "services.d/g@1.toml",
        "command = [\"/bin/sh\"]\nbogus = true\n",
    );
    let problems = tree.problems();
    let locations: Vec<&str> = problems
        .iter()
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            "ember.toml:2:1",
            "ember.toml:4:9",
            "ember.toml:7:11",
            "ember.toml:10:15",
            "ember.toml:14:13",
            "services.d/d.toml:2:17",
            "services.d/e.toml:2:9",
            "services.d/f.toml:1:21",
            "services.d/g@1.toml:2:1",
        ],
        "{problems:#?}"
    );
}

#[test]
fn positions_point_at_the_offending_key_or_value() {
    let tree = Tree::new();
    let text = r#"# ember.toml
[service."café"]
command = ["/bin/sh"]

[service.web]
  command   =   ["/bin/sh"]
	stop_timeout = "forever"
[service.db]
command = ["/bin/sh"]
requires = [
    "cache",
]
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    assert_eq!(
        problems,
        [
            // The name, inside its quotes' table header; columns count characters.
            format!(
                "ember.toml:{}: invalid service name \"café\": 'é' is not allowed (a name becomes a file name, an MQTT topic level and a D-Bus path); use letters, digits and . _ @ -",
                at(text, "\"café\"")
            ),
            // The value, after a tab.
            format!(
                "ember.toml:{}: invalid duration \"forever\" (expected number at 0); write e.g. \"250ms\", \"5s\", \"2m\"",
                at(text, "\"forever\"")
            ),
            // The dependency on its own line of a multi-line array.
            format!(
                "ember.toml:{}: service \"db\" requires \"cache\", which is not defined; define it or remove it from requires",
                at(text, "\"cache\"")
            ),
        ]
    );
    assert_eq!(at(text, "\"café\""), "2:10");
    assert_eq!(at(text, "\"forever\""), "7:17");
    assert_eq!(at(text, "\"cache\""), "11:5");
}

#[test]
fn a_service_with_errors_is_still_defined() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.web]
command = ["/bin/sh"]
restart = "sometimes"
[service.db]
command = ["/bin/sh"]
stdout = "db.log"
[service.app]
command = ["/bin/sh"]
requires = ["web", "db"]
"#,
    );
    // Defined twice even though the first definition is broken.
    tree.write("services.d/web.toml", "command = [\"/bin/sh\"]\n");
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:3:11: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`".to_owned(),
            "ember.toml:6:10: service \"db\": output \"db.log\" must be \"log\", \"console\", \"null\" or an absolute file path".to_owned(),
            format!(
                "services.d/web.toml:1:1: service \"web\" is defined twice (also in {}); keep one",
                tree.root.join("ember.toml").display()
            ),
        ]
    );
}

#[test]
fn syntax_errors_in_the_main_file_do_not_hide_those_of_services_d() {
    let tree = Tree::new();
    tree.write("ember.toml", "[log]\nlevel = debug\n");
    tree.write(
        "services.d/a.toml",
        "command = [\"/bin/sh\"]\nrestart = \"sometimes\"\n",
    );
    // The graph is not checked: the main file's services are not known.
    tree.write(
        "services.d/b.toml",
        "command = [\"/bin/sh\"]\nrequires = [\"main\"]\n",
    );
    let expected = [
        "ember.toml:2:9: string values must be quoted, expected literal string",
        "services.d/a.toml:2:11: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`",
    ];
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    assert_eq!(tree.lines(&loaded), expected);

    // In the services_dir the main file names, when the parser could read it.
    tree.write(
        "ember.toml",
        "[system]\nservices_dir = \"units\"\n[log]\nlevel = debug\n",
    );
    tree.write("units/c.toml", "command = [\"/bin/sh\"]\nbogus = 1\n");
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:4:9: string values must be quoted, expected literal string",
            "units/c.toml:2:1: unknown field `bogus`, expected one of `command`, `type`, `pid_file`, `user`, `group`, `env`, `workdir`, `requires`, `wants`, `after`, `restart`, `restart_delay`, `restart_delay_max`, `start_limit`, `start_limit_interval`, `stop_signal`, `stop_timeout`, `ready`, `ready_timeout`, `watchdog`, `stdout`, `stderr`, `enabled`, `on_failure`, `schedule`, `instances`, `limits`, `memory_max`, `cpu_weight`, `pids_max`, `oom_score_adjust`",
        ]
    );

    // Not when services_dir cannot be read: which directory is unknown.
    tree.write(
        "ember.toml",
        "[system]\nservices_dir = 5\n[log]\nlevel = debug\n",
    );
    assert_eq!(
        tree.problems(),
        ["ember.toml:4:9: string values must be quoted, expected literal string"]
    );
}

#[test]
fn every_bad_key_of_one_table_is_reported() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[system]
device = 1
services_dir = 2
colour = "red"
[service.a]
command = ["/bin/sh", 3]
type = "daemon"
restart = "sometimes"
stop_signal = "SIGNOPE"
stop_timeout = "soon"
ready = { log = "up", timeout = "5s" }
nonsense = true
[service.b]
command = ["/bin/sh"]
enabled = "yes"
[service.b.ready]
log = 1
wat = 2
"#,
    );
    tree.write(
        "services.d/c.toml",
        "command = \"/bin/sh\"\nenv = { A = 1 }\nstart_limit = -1\n",
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:2:10: invalid type: integer `1`, expected a string",
            "ember.toml:3:16: invalid type: integer `2`, expected path string",
            "ember.toml:4:1: unknown field `colour`, expected one of `device`, `services_dir`, `hostname`, `ctrl_alt_del`, `shutdown_timeout`, `rescue_shell`, `metrics_interval`, `log_dir`, `watchdog`",
            "ember.toml:6:23: invalid type: integer `3`, expected a string",
            "ember.toml:7:8: unknown variant `daemon`, expected one of `simple`, `oneshot`, `notify`, `forking`",
            "ember.toml:8:11: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`",
            "ember.toml:9:15: unknown signal \"SIGNOPE\"; write e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\"",
            "ember.toml:10:16: invalid duration \"soon\" (expected number at 0); write e.g. \"250ms\", \"5s\", \"2m\"",
            "ember.toml:11:23: unknown field `timeout`, expected one of `log`, `delay`, `notify`, `tcp`, `file`, `exec`",
            "ember.toml:12:1: unknown field `nonsense`, expected one of `command`, `type`, `pid_file`, `user`, `group`, `env`, `workdir`, `requires`, `wants`, `after`, `restart`, `restart_delay`, `restart_delay_max`, `start_limit`, `start_limit_interval`, `stop_signal`, `stop_timeout`, `ready`, `ready_timeout`, `watchdog`, `stdout`, `stderr`, `enabled`, `on_failure`, `schedule`, `instances`, `limits`, `memory_max`, `cpu_weight`, `pids_max`, `oom_score_adjust`",
            "ember.toml:15:11: invalid type: string \"yes\", expected a boolean",
            "ember.toml:17:7: invalid type: integer `1`, expected a string",
            // Every bad key of a nested table too.
            "ember.toml:18:1: unknown field `wat`, expected one of `log`, `delay`, `notify`, `tcp`, `file`, `exec`",
            "services.d/c.toml:1:11: invalid type: string \"/bin/sh\", expected an array",
            "services.d/c.toml:2:13: invalid type: integer `1`, expected a string",
            "services.d/c.toml:3:15: invalid value: integer `-1`, expected u32",
        ]
    );
}

#[test]
fn pid_file_and_ready_errors_point_at_their_values() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/sh"]
type = "forking"
pid_file = "run/a.pid"
[service.b]
command = ["/bin/sh"]
pid_file = "/run/b.pid"
[service.c]
command = ["/bin/sh"]
ready = { log = "listening (on" }
"#;
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        [
            format!(
                "ember.toml:{}: service \"a\": pid_file must be an absolute path such as \"/run/a.pid\"",
                at(text, "\"run/a.pid\"")
            ),
            format!(
                "ember.toml:{}: service \"b\": pid_file applies to type = \"forking\" only; remove it or set type = \"forking\"",
                at(text, "\"/run/b.pid\"")
            ),
            format!(
                r#"ember.toml:{}: service "c": ready log pattern "listening (on" is not a valid regex (found open group without closing ')'); escape the characters meant literally, e.g. '\(' or "\\(" for ("#,
                at(text, "{ log")
            ),
        ]
    );
}

#[test]
fn sections_and_services_of_the_wrong_type() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"system = 1
log = "debug"
control = ["/run/ember.sock"]
[service]
web = "/usr/bin/web"
[service.a]
command = ["/bin/sh"]
ready = "notify"
env = "PATH=/bin"
requires = "web"
"#,
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:1:10: \"system\" must be a table: write [system] and its keys below it",
            "ember.toml:2:7: \"log\" must be a table: write [log] and its keys below it",
            "ember.toml:3:11: \"control\" must be a table: write [control] and its keys below it",
            "ember.toml:5:7: service \"web\" must be a table: write [service.web] and its keys below it",
            "ember.toml:8:9: invalid type: string \"notify\", expected an inline table with one of log, delay, notify, tcp, file, exec, such as { notify = true }",
            "ember.toml:9:7: invalid type: string \"PATH=/bin\", expected a table",
            "ember.toml:10:12: invalid type: string \"web\", expected an array",
        ]
    );
}

/// Every error says what to write instead (or what to do), not only what is wrong.
#[test]
fn messages_read_like_advice() {
    let tree = Tree::new();
    let plain = tree.write("data", "not a program\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    tree.write(
        "ember.toml",
        &format!(
            r#"[system]
devise = "x"
[log]
level = 1
[control]
socket = ["/run/x.sock"]
[nope]
[[service.array]]
command = ["/bin/sh"]
[service."a b"]
command = ["/bin/sh"]
[service.c1]
command = []
[service.c2]
restart = "never"
[service.c3]
command = ["/nonexistent/x"]
[service.c4]
command = ["no-such-program-ember"]
env = {{ PATH = "/nonexistent" }}
[service.c5]
command = ["/"]
[service.c6]
command = [{plain:?}]
[service.t1]
command = ["/bin/sh"]
type = "thread"
[service.t2]
command = ["/bin/sh"]
restart = "often"
[service.t3]
command = ["/bin/sh"]
on_failure = "panic"
[service.t4]
command = ["/bin/sh"]
stop_timeout = "a while"
[service.t5]
command = ["/bin/sh"]
stop_signal = "SIGWHAT"
[service.t6]
command = ["/bin/sh"]
stdout = "out.log"
[service.f1]
command = ["/bin/sh"]
type = "forking"
[service.f2]
command = ["/bin/sh"]
pid_file = "/run/f2.pid"
[service.f3]
command = ["/bin/sh"]
type = "forking"
pid_file = "f3.pid"
[service.r1]
command = ["/bin/sh"]
ready = {{}}
[service.r2]
command = ["/bin/sh"]
ready = {{ notify = true, delay = "1s" }}
[service.r3]
command = ["/bin/sh"]
ready = {{ tcp = "host" }}
[service.r4]
command = ["/bin/sh"]
ready = {{ exec = [] }}
[service.r5]
command = ["/bin/sh"]
type = "oneshot"
ready = {{ notify = true }}
[service.w1]
command = ["/bin/sh"]
watchdog = "1s"
[service.w2]
command = ["/bin/sh"]
type = "notify"
watchdog = "0"
[service.u1]
command = ["/bin/sh"]
user = "ember-no-such-user"
[service.d1]
command = ["/bin/sh"]
requires = ["d1"]
[service.d2]
command = ["/bin/sh"]
after = ["d3"]
[service.d3]
command = ["/bin/sh"]
after = ["d2"]
[service.d4]
command = ["/bin/sh"]
requires = ["ghost"]
wants = ["phantom"]
[service.s1]
command = ["/bin/sh"]
env = "PATH=/bin"
[service.s2]
command = ["/bin/sh"]
ready = "notify"
[service.s3]
command = ["/bin/sh"]
requires = "d2"
[service.s4]
command = ["/bin/sh"]
start_limit = -1
[service.s5]
command = ["/bin/sh"]
enabled = "yes"
[service.s6]
command = "/bin/sh"
[service.s7]
command = ["/bin/sh"]
restart_delay = 5
[service.s8]
command = ["/bin/sh"]
bogus = 1
[service.s9]
command = ["/bin/sh"]
ready = {{ notify = true, timeout = "5s" }}
[service.s10]
command = ["/bin/sh"]
ready = {{ log = "(" }}
[service.s11]
command = ["/bin/sh"]
ready = {{ exec = "/bin/true" }}
[service.s12]
command = ["/bin/sh"]
group = "ember-no-such-group"
[service.s13]
command = ["/bin/sh"]
env = {{ X = 1 }}
[service.s14]
command = ["/bin/sh", 1]
[service.s15]
command = ["/bin/sh"]
pid_file = 1
[service.s16]
command = ["/bin/sh"]
type = "notify"
ready = {{ delay = "1s" }}
"#
        ),
    );
    tree.write("services.d/d1.toml", "command = [\"/bin/sh\"]\n");
    let problems = tree.problems();
    assert_eq!(problems.len(), 50, "{problems:#?}");
    let advice = [
        "expected", "write", "use ", "give", "add", "remove", "set ", "define", "keep", "create",
        "chmod", "such as", "must be", "one of", "escape",
    ];
    for problem in &problems {
        assert!(
            advice.iter().any(|a| problem.contains(a)),
            "no advice in: {problem}"
        );
    }
}

#[test]
fn an_unknown_dependency_in_two_lists_is_shown_in_each() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/sh"]
wants = ["net"]
after = ["clock", "net"]
"#;
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        [
            format!(
                "ember.toml:{}: warning: service \"a\" wants \"net\", which is not defined; define it or remove it from wants",
                at(text, "\"net\"")
            ),
            format!(
                "ember.toml:{}: warning: service \"a\" after \"clock\", which is not defined; define it or remove it from after",
                at(text, "\"clock\"")
            ),
            // The "net" of after, not the one of wants.
            "ember.toml:4:19: warning: service \"a\" after \"net\", which is not defined; define it or remove it from after".to_owned(),
        ]
    );
}

#[test]
fn pid1_settings_are_read() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[system]\nhostname = \"board7\"\nctrl_alt_del = \"ignore\"\nshutdown_timeout = \"2s\"\nrescue_shell = \"/bin/sh\"\n\n[log]\noutput = \"kmsg\"\n",
    );
    let config = tree.load().config.expect("valid");
    assert_eq!(config.system.hostname.as_deref(), Some("board7"));
    assert_eq!(
        config.system.ctrl_alt_del,
        crate::config::CtrlAltDel::Ignore
    );
    assert_eq!(
        config.system.shutdown_timeout,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(config.system.rescue_shell, Some(PathBuf::from("/bin/sh")));
    assert_eq!(config.log.output, crate::config::LogOutput::Kmsg);
}

#[test]
fn a_broken_configuration_still_yields_its_settings_without_services() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[system]\nrescue_shell = \"/bin/sh\"\n\n[control]\nsocket = \"/run/x.sock\"\n\n[service.a]\ncommand = [\"/bin/true\"]\nrestart = \"sometimes\"\n\n[service.b]\ncommand = [\"/bin/true\"]\n",
    );
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    let settings = loaded.settings.expect("settings of a broken configuration");
    assert_eq!(settings.control.socket, PathBuf::from("/run/x.sock"));
    assert_eq!(settings.system.rescue_shell, Some(PathBuf::from("/bin/sh")));
    assert!(
        settings.services.is_empty(),
        "no service of a broken configuration runs"
    );
}

#[test]
fn wrong_types_are_named_in_toml_words_and_every_bad_element_is_reported() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[system]
device = ["gw"]
hostname = { name = "gw" }
rescue_shell = 1979-05-27
ctrl_alt_del = 3
[service.a]
command = [1, "/bin/sh", false]
env = { A = 1, B = "b", C = 2.5 }
type = ["simple"]
ready = ["up"]
"#,
    );
    assert_eq!(
        tree.problems(),
        [
            "ember.toml:2:10: invalid type: array, expected a string",
            "ember.toml:3:12: invalid type: table, expected a string",
            "ember.toml:4:16: invalid type: datetime `1979-05-27`, expected path string",
            "ember.toml:5:16: invalid type: integer `3`, expected one of `reboot`, `poweroff`, `ignore`",
            "ember.toml:7:12: invalid type: integer `1`, expected a string",
            "ember.toml:7:26: invalid type: boolean `false`, expected a string",
            "ember.toml:8:13: invalid type: integer `1`, expected a string",
            "ember.toml:8:29: invalid type: floating point `2.5`, expected a string",
            "ember.toml:9:8: invalid type: array, expected one of `simple`, `oneshot`, `notify`, `forking`",
            // Not read as the table's keys in order, as serde did.
            "ember.toml:10:9: invalid type: array, expected an inline table with one of log, delay, notify, tcp, file, exec, such as { notify = true }",
        ]
    );
}

#[test]
fn a_section_with_errors_keeps_the_keys_that_are_right() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[system]\nservices_dir = \"units\"\nrescue_shell = \"/bin/sh\"\ndevise = \"gw\"\n\n[log]\noutput = \"kmsg\"\nlevel = 3\n",
    );
    // Looked for in the services_dir that is set, not in the default one.
    tree.write("units/a.toml", "command = [\"/bin/sh\"]\nbogus = 1\n");
    tree.write("services.d/b.toml", "bogus = 1\n");
    let loaded = tree.load();
    assert_eq!(
        tree.lines(&loaded),
        [
            "ember.toml:4:1: unknown field `devise`, expected one of `device`, `services_dir`, `hostname`, `ctrl_alt_del`, `shutdown_timeout`, `rescue_shell`, `metrics_interval`, `log_dir`, `watchdog`",
            "ember.toml:8:9: invalid type: integer `3`, expected a string",
            "units/a.toml:2:1: unknown field `bogus`, expected one of `command`, `type`, `pid_file`, `user`, `group`, `env`, `workdir`, `requires`, `wants`, `after`, `restart`, `restart_delay`, `restart_delay_max`, `start_limit`, `start_limit_interval`, `stop_signal`, `stop_timeout`, `ready`, `ready_timeout`, `watchdog`, `stdout`, `stderr`, `enabled`, `on_failure`, `schedule`, `instances`, `limits`, `memory_max`, `cpu_weight`, `pids_max`, `oom_score_adjust`",
        ]
    );
    let settings = loaded.settings.expect("settings of a broken configuration");
    assert_eq!(settings.system.services_dir, tree.root.join("units"));
    assert_eq!(settings.system.rescue_shell, Some(PathBuf::from("/bin/sh")));
    assert_eq!(settings.log.output, LogOutput::Kmsg);
    assert_eq!(settings.log.level, None);
}

#[test]
fn a_syntax_error_still_yields_the_settings_it_could_read() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[system]\nrescue_shell = \"/bin/sh\"\n\n[control]\nsocket = \"/run/x.sock\"\n\n[service.a]\ncommand = [\"/bin/true\"\n",
    );
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    let settings = loaded.settings.expect("settings despite the syntax error");
    assert_eq!(settings.control.socket, PathBuf::from("/run/x.sock"));
    assert_eq!(settings.system.rescue_shell, Some(PathBuf::from("/bin/sh")));
    assert!(settings.services.is_empty());
}

#[test]
fn a_missing_workdir_is_a_runtime_problem() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/true\"]\nworkdir = \"/nonexistent/dir\"\n",
    );
    let loaded = tree.load();
    assert!(
        loaded.config.is_some(),
        "it may be mounted later: the boot goes on"
    );
    assert_eq!(loaded.problems.len(), 1);
    assert_eq!(loaded.problems[0].severity, Severity::Runtime);
    assert!(loaded.problems[0]
        .message
        .contains("workdir /nonexistent/dir is not a directory"));
}

#[test]
fn the_mqtt_table() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[system]\ndevice = \"b1\"\n\n[mqtt]\nurl = \"mqtt://10.0.0.5:1884\"\nallow = [\"web*\"]\nallow_system = true\ngroups = [\"lab\"]\nkeep_alive = \"10s\"\nhomeassistant = true\n",
    );
    let mqtt = tree.load().config.expect("valid").mqtt.expect("[mqtt]");
    assert_eq!(
        (mqtt.host.as_str(), mqtt.port, mqtt.tls),
        ("10.0.0.5", 1884, false)
    );
    assert_eq!(mqtt.allow, ["web*"]);
    assert!(mqtt.allow_system && mqtt.homeassistant);
    assert_eq!(mqtt.groups, ["lab"]);
    assert_eq!(mqtt.keep_alive, std::time::Duration::from_secs(10));
    assert_eq!(mqtt.prefix, "ember");

    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "[mqtt]\nurl = \"http://broker\"\nprefix = \"a/b\"\ngroups = [\"x#\"]\nbrokr = 1\n",
    );
    let messages: Vec<String> = tree.load().problems.iter().map(|p| p.to_string()).collect();
    let all = messages.join("\n");
    assert!(all.contains("must start with mqtt:// or mqtts://"), "{all}");
    assert!(
        all.contains("prefix \"a/b\" must be one MQTT topic level"),
        "{all}"
    );
    assert!(
        all.contains("group \"x#\" must be one MQTT topic level"),
        "{all}"
    );
    assert!(all.contains("unknown field `brokr`"), "{all}");

    let tree = Tree::new();
    tree.write("ember.toml", "[mqtt]\nurl = \"mqtts://broker\"\n");
    let all: Vec<String> = tree.load().problems.iter().map(|p| p.to_string()).collect();
    assert!(
        all.iter().any(|p| p.contains("mqtts:// needs ca_file")),
        "{all:?}"
    );
}

#[test]
fn resource_limits_are_read() {
    use super::limits::Amount;
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
limits = { nofile = 1024, nproc = 64, core = 0, memlock = "64M", stack = "infinity" }
memory_max = "64M"
cpu_weight = 100
pids_max = 128
oom_score_adjust = -500
[service.b]
command = ["/bin/sh"]
"#,
    );
    let loaded = tree.load();
    assert_eq!(tree.lines(&loaded), Vec::<String>::new());
    let config = loaded.config.unwrap();
    let a = &config.services["a"].limits;
    let rlimits: Vec<(&str, Amount)> = a.rlimits.iter().map(|r| (r.name, r.amount)).collect();
    assert_eq!(
        rlimits,
        vec![
            ("nofile", Amount::Value(1024)),
            ("nproc", Amount::Value(64)),
            ("core", Amount::Value(0)),
            ("memlock", Amount::Value(64 << 20)),
            ("stack", Amount::Infinity),
        ]
    );
    assert_eq!(a.memory_max, Some(Amount::Value(64 << 20)));
    assert_eq!(a.cpu_weight, Some(100));
    assert_eq!(a.pids_max, Some(Amount::Value(128)));
    assert_eq!(a.oom_score_adjust, Some(-500));
    assert!(a.needs_controllers());
    assert_eq!(config.services["b"].limits, limits::Limits::default());
    assert!(!config.services["b"].limits.needs_controllers());
}

#[test]
fn bad_resource_limits_are_reported_where_they_are() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/sh"]
limits = { nofiles = 10, core = -1, memlock = "64Q" }
memory_max = "lots"
pids_max = true
[service.b]
command = ["/bin/sh"]
cpu_weight = 0
oom_score_adjust = -1001
memory_max = 0
pids_max = "0"
"#;
    tree.write("ember.toml", text);
    let loaded = tree.load();
    assert!(loaded.config.is_none());
    let advice = r#"write a number, a size such as "512K", "64M", "1G", or "infinity""#;
    assert_eq!(
        tree.problems(),
        vec![
            format!("ember.toml:{}: unknown field `nofiles`, expected one of `nofile`, `nproc`, `core`, `memlock`, `as`, `data`, `stack`, `fsize`, `cpu`, `locks`, `sigpending`, `msgqueue`, `nice`, `rtprio`", at(text, "nofiles")),
            format!("ember.toml:{}: invalid value: integer `-1`, expected u64", at(text, "-1,")),
            format!("ember.toml:{}: invalid size \"64Q\" (unknown unit \"Q\"; the units are K, M, G and T, powers of 1024); {advice}", at(text, "\"64Q\"")),
            format!("ember.toml:{}: invalid amount \"lots\"; {advice}", at(text, "\"lots\"")),
            format!("ember.toml:{}: invalid type: boolean `true`, expected a number, a size such as \"64M\", or \"infinity\"", at(text, "true")),
            format!("ember.toml:{}: service \"b\": cpu_weight 0 is out of range; give 1 to 10000 (100 is the default)", at(text, "0\noom")),
            format!("ember.toml:{}: service \"b\": oom_score_adjust -1001 is out of range; give -1000 (never killed) to 1000 (killed first)", at(text, "-1001")),
            format!("ember.toml:{}: service \"b\": memory_max 0 would OOM-kill it at once; write \"infinity\" for no limit", at(text, "0\npids")),
            format!("ember.toml:{}: service \"b\": pids_max 0 allows it no process at all; write \"infinity\" for no limit", at(text, "\"0\"")),
        ]
    );
}

#[test]
fn metrics_interval_is_read_and_not_too_short() {
    let tree = Tree::new();
    tree.write("ember.toml", "[system]\nmetrics_interval = \"30s\"\n");
    let config = tree.load().config.unwrap();
    assert_eq!(
        config.system.metrics_interval,
        Some(Duration::from_secs(30))
    );
    tree.write("ember.toml", "");
    assert_eq!(tree.load().config.unwrap().system.metrics_interval, None);
    let text = "[system]\nmetrics_interval = \"100ms\"\n";
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        vec![format!(
            "ember.toml:{}: metrics_interval must be at least 1s (each round reads /proc and the cgroups of every service); remove it for none",
            at(text, "\"100ms\"")
        )]
    );
    assert!(tree.load().config.is_none());
}

#[test]
fn check_text_checks_the_main_file_alone_without_looking_at_the_machine() {
    let tree = Tree::new();
    let main = "[system]\ndevice = \"b1\"\n\n[service.a]\ncommand = [\"/nonexistent/a\"]\nuser = \"no-such-user-xyz\"\nworkdir = \"/nonexistent/dir\"\nrequires = [\"b\"]\n\n[service.c]\ncommand = [\"/bin/sh\"]\nstop_signal = \"SIGNOPE\"\n\n[mqtt]\nurl = \"mqtts://broker\"\nca_file = \"/nonexistent/ca.pem\"\n";
    tree.write("ember.toml", main);
    // A service in services.d: load finds it, check_text does not look.
    tree.write("services.d/b.toml", "command = [\"/bin/sh\"]\n");
    let path = tree.root.join("ember.toml");
    let lines = |l: &Loaded| l.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let signal = format!(
        "{}:{}: unknown signal",
        path.display(),
        at(main, "\"SIGNOPE")
    );

    let on_disk = tree.load();
    assert_eq!(
        on_disk
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Runtime)
            .count(),
        4,
        "command, user, workdir, ca_file: {:?}",
        lines(&on_disk)
    );
    // Alone: no program, account or file looked up, and no services.d: "b" is not defined.
    let alone = check_text(&path, main);
    assert_eq!(lines(&alone).len(), 2, "{:?}", lines(&alone));
    assert!(lines(&alone)[0].contains("requires \"b\", which is not defined"));
    assert!(lines(&alone)[1].starts_with(&signal), "{:?}", lines(&alone));
    let fixed = main.replace("SIGNOPE", "SIGINT").replace("\"b\"", "");
    let config = check_text(&path, &fixed).config.expect("valid as text");
    assert_eq!(config.services["c"].stop_signal, Signal::SIGINT);
    assert_eq!(config.system.services_dir, tree.root.join("services.d"));
    assert_eq!(config.services.len(), 2);
}

/// Found by the fuzzer (fuzz/fuzz_targets/config.rs): a value quoted in a message brought
/// its newline, tab or ESC into `ember check`'s output and PID 1's log records.
#[test]
fn a_problem_prints_on_one_line_whatever_the_values() {
    let text = "[service.a]\ncommand = [\"/bin/sh\"]\ntype = \"one\\nshot\"\n\n[service.\"b\\tc\"]\ncommand = [\"/bin/sh\"]\n\n[service.d]\ncommand = [\"/bin/sh\"]\nstop_signal = \"\"\"\nSIG\\u001b[2JTERM\r\n\"\"\"\n";
    let loaded = check_text(Path::new("/etc/ember/ember.toml"), text);
    let lines: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert!(
        lines[0].contains(r"unknown variant `one\nshot`"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(r#"invalid service name "b\tc""#),
        "{lines:?}"
    );
    assert!(
        lines[2].contains(r#"unknown signal "SIG\u{1b}[2JTERM\r\n""#),
        "{lines:?}"
    );
}

/// Found by the fuzzer (fuzz/fuzz_targets/mqtt_command.rs): a board named "group" got
/// no MQTT command at all, its topics being read as fleet-group topics.
#[test]
fn a_device_named_group_is_refused_with_mqtt() {
    let path = Path::new("/etc/ember/ember.toml");
    let loaded = check_text(path, "[system]\ndevice = \"group\"\n\n[mqtt]\n");
    let lines: Vec<String> = loaded.errors().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("device \"group\" cannot be an MQTT topic level"),
        "{lines:?}"
    );
    assert!(check_text(path, "[system]\ndevice = \"group\"\n")
        .config
        .is_some());
    assert!(
        check_text(path, "[system]\ndevice = \"groups\"\n\n[mqtt]\n")
            .config
            .is_some()
    );
}

/// `ready = { log }` needs output that ember reads (found by hostile use: with stdout =
/// "console" it passed `ember check` and could never become ready).
#[test]
fn a_log_readiness_needs_output_that_ember_reads() {
    let tree = Tree::new();
    for (i, (stdout, stderr)) in [
        ("console", "console"),
        ("null", "null"),
        ("/tmp/out.log", "null"),
        ("console", "/tmp/err.log"),
    ]
    .into_iter()
    .enumerate()
    {
        let text = format!(
            "[service.a]\ncommand = [\"/bin/sh\"]\nready = {{ log = \"up\" }}\nstdout = \"{stdout}\"\nstderr = \"{stderr}\"\n"
        );
        tree.write("ember.toml", &text);
        let problems = tree.problems();
        assert_eq!(problems.len(), 1, "case {i}: {problems:?}");
        assert!(
            problems[0].starts_with("ember.toml:3:9: service \"a\": ready = { log = ... } matches the lines ember reads"),
            "{}",
            problems[0]
        );
    }
    // One stream to the log is enough: the pattern may be on stderr.
    tree.write(
        "ember.toml",
        "[service.a]\ncommand = [\"/bin/sh\"]\nready = { log = \"up\" }\nstdout = \"console\"\n",
    );
    assert_eq!(tree.problems(), Vec::<String>::new());
}

#[test]
fn control_allow_rules() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[control]
socket = "/run/x.sock"

[[control.allow]]
group = "0"
verbs = ["status", "subscribe"]

[[control.allow]]
user = "root"
verbs = ["restart"]
services = ["web*"]
"#,
    );
    let config = tree.load().config.unwrap();
    let rules = &config.control.allow;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].who, ember_ipc::rights::Who::Gid(0));
    assert_eq!(rules[1].who, ember_ipc::rights::Who::Uid(0));
    assert_eq!(rules[1].services, Some(vec!["web*".to_owned()]));
    assert!(config.control.policy().opens_the_socket());

    tree.write(
        "ember.toml",
        r#"[[control.allow]]
verbs = ["status"]

[[control.allow]]
user = "root"
group = "root"
verbs = ["status"]

[[control.allow]]
user = "root"
verbs = ["status", "explode", "hello"]

[[control.allow]]
user = "root"
verbs = ["stop"]
services = ["a/b"]

[[control.allow]]
user = "no-such-user-here"
verbs = ["status"]
"#,
    );
    let problems = tree.problems();
    for expected in [
        "ember.toml:1:1: [[control.allow]] 1: a rule names a user or a group",
        "ember.toml:4:1: [[control.allow]] 2: a rule names a user or a group",
        "ember.toml:11:20: [[control.allow]] 3: unknown verb \"explode\"",
        "ember.toml:16:13: [[control.allow]] 4: \"a/b\" is not a glob of service names",
        "ember.toml:19:8: [[control.allow]] 5: no user named \"no-such-user-here\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
    tree.write(
        "ember.toml",
        "[[control.allow]]\nuser = \"root\"\nverbs = [\"status\"]\ncolour = \"red\"\n",
    );
    assert_eq!(
        tree.problems(),
        ["ember.toml:4:1: unknown field `colour`, expected one of `user`, `group`, `verbs`, `services`"]
    );
}

/// A verb no rule can grant is named for what it is, not as unknown (found by a hostile
/// review: `verbs = ["reexec"]` was "unknown verb", though it is one, root's alone).
#[test]
fn a_verb_no_rule_grants_is_said_to_be_so() {
    let tree = Tree::new();
    for (verb, said) in [
        (
            "reexec",
            "[[control.allow]] 1: \"reexec\" is root's alone; no rule grants it",
        ),
        (
            "hello",
            "[[control.allow]] 1: \"hello\" needs no rule; every client admitted may say it",
        ),
    ] {
        tree.write(
            "ember.toml",
            &format!("[[control.allow]]\nuser = \"root\"\nverbs = [\"status\", \"{verb}\"]\n"),
        );
        let problems = tree.problems();
        assert!(
            problems.iter().any(|p| p.contains(said)),
            "{said:?} not in {problems:#?}"
        );
    }
}

#[test]
fn outputs_to_rotated_files() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[system]
log_dir = "/var/log/board"

[service.a]
command = ["/bin/sh"]
stdout = { file = "a.log", max_size = "64K", keep = 5 }
stderr = { file = "/tmp/a.err" }
"#,
    );
    let config = tree.load().config.unwrap();
    let a = &config.services["a"];
    assert_eq!(
        a.stdout,
        Output::Rotated(std::sync::Arc::new(service::RotatedFile {
            path: "/var/log/board/a.log".into(),
            max_size: 64 * 1024,
            keep: 5
        }))
    );
    assert_eq!(
        a.stderr,
        Output::Rotated(std::sync::Arc::new(service::RotatedFile {
            path: "/tmp/a.err".into(),
            max_size: service::DEFAULT_MAX_SIZE,
            keep: service::DEFAULT_KEEP
        }))
    );
    tree.write(
        "ember.toml",
        r#"[system]
log_dir = "logs"

[service.a]
command = ["/bin/sh"]
stdout = { max_size = "1M" }
stderr = { file = "x.log", max_size = "1K", keep = 0 }

[service.b]
command = ["/bin/sh"]
stdout = { file = "b.log", size = "1M" }
stderr = 5
"#,
    );
    let problems = tree.problems();
    for expected in [
        "ember.toml:2:11: log_dir \"logs\" must be an absolute path",
        "ember.toml:6:10: service \"a\": an output table needs file",
        "ember.toml:7:39: service \"a\": max_size must be a size of at least 4K",
        "ember.toml:7:52: service \"a\": keep must be 1 to 100",
        "ember.toml:11:28: unknown field `size`, expected one of `file`, `max_size`, `keep`",
        "ember.toml:12:10: invalid type: integer `5`, expected \"log\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
}

#[test]
fn the_watchdog_defaults_and_values() {
    let path = Path::new("/etc/ember/ember.toml");
    let none = check_text(path, "").config.unwrap();
    assert_eq!(none.system.watchdog, None);
    let defaults = check_text(path, "[system]\nwatchdog = {}\n")
        .config
        .unwrap();
    assert_eq!(
        defaults.system.watchdog,
        Some(watchdog::WatchdogConfig {
            device: PathBuf::from("/dev/watchdog0"),
            timeout: Duration::from_secs(30),
            on_shutdown: watchdog::OnShutdown::Auto,
        })
    );
    let text = "[system]\nwatchdog = { device = \"/dev/watchdog1\", timeout = \"2m\", on_shutdown = \"keep\" }\n";
    let set = check_text(path, text).config.unwrap();
    assert_eq!(
        set.system.watchdog,
        Some(watchdog::WatchdogConfig {
            device: PathBuf::from("/dev/watchdog1"),
            timeout: Duration::from_secs(120),
            on_shutdown: watchdog::OnShutdown::Keep,
        })
    );
}

#[test]
fn bad_watchdog_keys_are_errors_at_their_value() {
    let tree = Tree::new();
    let text = r#"[system]
watchdog = { device = "watchdog0", timeout = "1500ms", on_shutdown = "disarm", pet = "1s" }
"#;
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        [format!(
            "ember.toml:{}: unknown variant `disarm`, expected one of `auto`, `close`, `keep`",
            at(text, "\"disarm\"")
        ),
        format!(
            "ember.toml:{}: unknown field `pet`, expected one of `device`, `timeout`, `on_shutdown`",
            at(text, "pet =")
        )]
    );
    // Each value on its own (a table with a wrong shape is not checked further), with a
    // device this machine has.
    for (line, needle, message) in [
        (
            "watchdog = { device = \"watchdog0\" }",
            "\"watchdog0\"",
            "watchdog device \"watchdog0\" must be an absolute path, e.g. \"/dev/watchdog0\"",
        ),
        (
            "watchdog = { device = \"/dev/null\", timeout = \"1500ms\" }",
            "\"1500ms\"",
            "watchdog timeout must be a whole number of seconds, at least 1 (drivers take seconds), e.g. \"30s\"",
        ),
        (
            "watchdog = { device = \"/dev/null\", timeout = \"0s\" }",
            "\"0s\"",
            "watchdog timeout must be a whole number of seconds, at least 1 (drivers take seconds), e.g. \"30s\"",
        ),
        (
            "watchdog = { device = \"/dev/null\", timeout = \"soon\" }",
            "\"soon\"",
            "invalid duration \"soon\" (expected number at 0); write e.g. \"250ms\", \"5s\", \"2m\"",
        ),
        (
            "watchdog = \"/dev/watchdog0\"",
            "\"/dev/watchdog0\"",
            "invalid type: string \"/dev/watchdog0\", expected a table such as { device = \"/dev/watchdog0\", timeout = \"30s\" }",
        ),
    ] {
        let text = format!("[system]\n{line}\n");
        tree.write("ember.toml", &text);
        assert_eq!(
            tree.problems(),
            [format!("ember.toml:{}: {message}", at(&text, needle))],
            "{line}"
        );
    }
}

#[test]
fn a_watchdog_device_missing_here_fails_check_but_not_a_boot() {
    let tree = Tree::new();
    let text = "[system]\nwatchdog = { device = \"/dev/ember-test-no-watchdog\" }\n";
    tree.write("ember.toml", text);
    let loaded = tree.load();
    assert_eq!(
        tree.lines(&loaded),
        [format!(
            "ember.toml:{}: watchdog device /dev/ember-test-no-watchdog: No such file or directory (os error 2) (on the board its driver must be loaded before ember starts)",
            at(text, "\"/dev/ember-test")
        )]
    );
    assert_eq!(loaded.problems[0].severity, Severity::Runtime);
    assert!(loaded.config.is_some_and(|c| c.system.watchdog.is_some()));
    // Not a character device: a regular file.
    let text = "[system]\nwatchdog = { device = \"/etc/passwd\" }\n";
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        [format!(
            "ember.toml:{}: watchdog device /etc/passwd is a regular file, not a character device",
            at(text, "\"/etc/passwd")
        )]
    );
}

/// The default device (/dev/watchdog0) is looked at as a device written out is: a
/// machine without it fails `ember check` at the watchdog table, not only at boot.
#[test]
fn the_default_watchdog_device_is_checked_as_a_written_one() {
    let tree = Tree::new();
    let text = "[system]\nwatchdog = { timeout = \"30s\" }\n";
    tree.write("ember.toml", text);
    let loaded = tree.load();
    let default = Path::new(watchdog::DEFAULT_DEVICE);
    let is_device = std::fs::metadata(default)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()));
    if is_device {
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        return;
    }
    let lines = tree.lines(&loaded);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "ember.toml:{}: watchdog device /dev/watchdog0 (the default: no device is set): ",
            at(text, "{ timeout")
        )),
        "{lines:?}"
    );
    assert_eq!(loaded.problems[0].severity, Severity::Runtime);
    assert!(loaded.config.is_some_and(|c| c.system.watchdog.is_some()));
    // check_text does not look at the machine.
    assert!(check_text(&tree.root.join("ember.toml"), text)
        .problems
        .is_empty());
}

#[test]
fn schedules_and_their_mistakes() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.upload]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h", after_boot = "5m", jitter = "2m" }

[service.once]
type = "oneshot"
command = ["/bin/true"]
schedule = { after_boot = "30s" }

[service.web]
command = ["/bin/sh"]
after = ["upload"]
"#,
    );
    let config = tree.load().config.unwrap();
    assert_eq!(
        config.services["upload"].schedule.as_deref(),
        Some(&service::Schedule {
            every: Some(Duration::from_secs(3600)),
            after_boot: Some(Duration::from_secs(300)),
            jitter: Duration::from_secs(120),
        })
    );
    assert_eq!(
        config.services["once"].schedule.as_deref(),
        Some(&service::Schedule {
            every: None,
            after_boot: Some(Duration::from_secs(30)),
            jitter: Duration::ZERO,
        })
    );
    assert_eq!(config.services["web"].schedule, None);
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
schedule = { every = "1h" }

[service.b]
type = "oneshot"
command = ["/bin/true"]
schedule = { jitter = "1m" }

[service.c]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "0s", at = "03:00" }

[service.d]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "soon" }

[service.e]
command = ["/bin/sh"]
requires = ["f"]

[service.f]
type = "oneshot"
command = ["/bin/true"]
schedule = "hourly"
"#,
    );
    let problems = tree.problems();
    for expected in [
        "ember.toml:3:12: service \"a\": schedule applies to type = \"oneshot\" only",
        "ember.toml:8:12: service \"b\": schedule needs every, after_boot or both",
        "ember.toml:13:28: unknown field `at`, expected one of `every`, `after_boot`, `jitter`",
        "ember.toml:18:22: invalid duration \"soon\"",
        "ember.toml:27:12: invalid type: string \"hourly\", expected an inline table such as { every = \"1h\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
    // every = "0s" once the unknown key is gone; requires of a scheduled service.
    tree.write(
        "ember.toml",
        r#"[service.c]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "0s" }

[service.e]
command = ["/bin/sh"]
requires = ["f"]

[service.f]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h" }

[service.g]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1ms" }
"#,
    );
    let problems = tree.problems();
    // every = "1ms" ran 500 processes a second, each run logged: ember's log flooded.
    for expected in [
        "ember.toml:4:22: service \"c\": every must be at least 1s",
        "ember.toml:8:13: service \"e\" requires \"f\", which runs on a schedule",
        "ember.toml:18:22: service \"g\": every must be at least 1s",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
}

/// A duration written as a bare number (`stop_timeout = 5`, `every = 3600`, as other
/// tools take seconds) was "invalid type: integer `5`, expected a string": right, but it
/// left the reader to guess that the unit is missing. It now says what to write.
#[test]
fn a_duration_written_as_a_number_says_to_give_its_unit() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/true"]
stop_timeout = 5
ready = { delay = 1.5 }

[service.b]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = 3600 }
"#;
    tree.write("ember.toml", text);
    assert_eq!(
        tree.problems(),
        [
            format!("ember.toml:{}: invalid type: integer `5`, expected a duration: a string with its unit, e.g. \"5s\" (or \"5ms\", \"5m\")", at(text, "5\n")),
            format!("ember.toml:{}: invalid type: floating point `1.5`, expected a duration: a string with its unit, in whole numbers, e.g. \"1500ms\" for 1.5 seconds", at(text, "1.5")),
            format!("ember.toml:{}: invalid type: integer `3600`, expected a duration: a string with its unit, e.g. \"3600s\" (or \"3600ms\", \"3600m\")", at(text, "3600")),
        ]
    );
}

/// A jitter as long as the period puts a run off past the next one's time, which is then
/// skipped: `every = "1m", jitter = "5m"` ran about every 3 minutes, not every minute.
/// A warning: a board whose file has it boots as before.
#[test]
fn a_jitter_not_shorter_than_every_is_warned_of() {
    let tree = Tree::new();
    let text = r#"[service.a]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1m", jitter = "5m" }

[service.b]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h", jitter = "1h" }

[service.c]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h", after_boot = "1m", jitter = "59m" }

[service.d]
type = "oneshot"
command = ["/bin/true"]
schedule = { after_boot = "1m", jitter = "1h" }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    assert_eq!(
        problems,
        [
            format!("ember.toml:{}: warning: service \"a\": jitter is not shorter than every, so a run it puts off can pass the next one's time, which is then skipped; make jitter shorter than every (e.g. half of it)", at(text, "\"5m\" }")),
            format!("ember.toml:{}: warning: service \"b\": jitter is not shorter than every, so a run it puts off can pass the next one's time, which is then skipped; make jitter shorter than every (e.g. half of it)", at(text, "\"1h\" }")),
        ],
        "{problems:#?}"
    );
}

#[test]
fn templates_their_pools_and_their_mistakes() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service."worker@"]
command = ["/bin/sh", "-c", "exec sleep 1000", "{instance}"]
env = { QUEUE = "q-{instance}" }
stdout = { file = "{instance}/out.log" }
instances = 2

[service.web]
command = ["/bin/sh"]
requires = ["cache@main"]
"#,
    );
    tree.write(
        "services.d/cache@.toml",
        "command = [\"/bin/sh\"]\nworkdir = \"/srv/{instance}\"\ninstances = [\"a\", \"b\"]\n",
    );
    // An instance defined as a service of its own is that service.
    tree.write("services.d/cache@b.toml", "command = [\"/bin/true\"]\n");
    let loaded = tree.load();
    assert_eq!(tree.lines(&loaded), Vec::<String>::new());
    let config = loaded.config.unwrap();
    let names: Vec<&str> = config.services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "cache@a",
            "cache@b",
            "cache@main",
            "web",
            "worker@1",
            "worker@2"
        ]
    );
    let templates: Vec<&str> = config.templates.keys().map(String::as_str).collect();
    assert_eq!(templates, ["cache@", "worker@"]);
    let w2 = &config.services["worker@2"];
    assert_eq!(w2.command.iter().nth(3), Some("2"));
    assert_eq!(w2.env["QUEUE"], "q-2");
    assert_eq!(
        w2.stdout,
        Output::Rotated(std::sync::Arc::new(service::RotatedFile {
            path: PathBuf::from("/var/log/ember/2/out.log"),
            max_size: service::DEFAULT_MAX_SIZE,
            keep: service::DEFAULT_KEEP,
        }))
    );
    assert_eq!(
        config.services["cache@main"].workdir,
        Some(PathBuf::from("/srv/main"))
    );
    assert_eq!(
        config.services["cache@b"]
            .command
            .iter()
            .collect::<Vec<_>>(),
        ["/bin/true"]
    );
    assert!(!config.services["worker@1"].transient);
    // The template keeps its placeholders, with a relative output under log_dir.
    assert_eq!(
        config.templates["worker@"].env["QUEUE"], "q-{instance}",
        "a template is made into instances, not run"
    );

    // Every mistake, at file:line:col.
    tree.write(
        "ember.toml",
        r#"[service."worker@"]
command = ["/bin/sh"]
instances = ["ok", "", "a/b", "ok", "..", "-x"]
requires = ["nope"]

[service."pool@"]
command = ["/bin/sh"]
instances = 0

[service."a@b@"]
command = ["/bin/sh"]

[service.web]
command = ["/bin/sh", "{instance}"]
instances = 2
wants = ["worker@"]

[service.db]
command = ["/bin/sh"]
after = ["worker@"]
"#,
    );
    std::fs::remove_dir_all(tree.root.join("services.d")).unwrap();
    let problems = tree.problems();
    let expected = [
        "ember.toml:3:13: template \"worker@\": instance \"\": \"worker@\" names no instance",
        "ember.toml:3:13: template \"worker@\": instance \"..\": invalid instance \"..\" of worker@: it starts with '.'",
        "ember.toml:3:13: template \"worker@\": instance \"-x\": invalid instance \"-x\" of worker@: it starts with '-'",
        "ember.toml:3:13: template \"worker@\": instance \"a/b\": invalid service name \"worker@a/b\": '/' is not allowed",
        "ember.toml:3:13: template \"worker@\": instance \"ok\": it is listed twice",
        "ember.toml:4:13: service \"worker@\" requires \"nope\", which is not defined",
        "ember.toml:8:13: instances = 0: a pool has 1 to 1024 instances",
        "ember.toml:10:10: template \"a@b@\": a template's name has one @, at its end",
        "ember.toml:13:10: warning: service \"web\" is not a template: {instance} in it stays as written",
        "ember.toml:15:13: service \"web\": instances is a template's key",
        "ember.toml:16:10: service \"web\" names the template \"worker@\"; name one of its instances",
        "ember.toml:20:10: service \"db\" names the template \"worker@\"; name one of its instances",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{}",
            problems.join("\n")
        );
    }
    // An instance's bad dependency is its template's, said once.
    assert_eq!(
        problems.iter().filter(|p| p.contains("\"nope\"")).count(),
        1,
        "{problems:#?}"
    );
}

/// Found by a hostile review: an empty, a relative and a 120-byte control socket path
/// passed `ember check`, and ember then ran without its socket; so did a notify service
/// whose socket's path was too long to bind, which then failed every start.
#[test]
fn socket_paths_that_cannot_be_bound_are_problems() {
    let long = format!("/run/{}/control.sock", "d".repeat(110));
    for (socket, said) in [
        ("", "socket is empty"),
        (
            "relative.sock",
            "warning: socket \"relative.sock\" is relative",
        ),
        (
            long.as_str(),
            "bytes, and a socket's path may be 107 at most",
        ),
    ] {
        let tree = Tree::new();
        let text = format!("[control]\nsocket = \"{socket}\"\n");
        tree.write("ember.toml", &text);
        let problems = tree.problems();
        assert_eq!(problems.len(), 1, "{socket:?}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("ember.toml:{}: ", at(&text, "\"")))
                && problems[0].contains(said),
            "{problems:?}"
        );
    }
    let tree = Tree::new();
    let socket = format!("/run/{}/c.sock", "d".repeat(40));
    let name = "n".repeat(60);
    let text = format!(
        "[control]\nsocket = \"{socket}\"\n\n[service.{name}]\ncommand = [\"/bin/true\"]\nready = {{ notify = true }}\n\n[service.short]\ncommand = [\"/bin/true\"]\nready = {{ notify = true }}\n"
    );
    tree.write("ember.toml", &text);
    let problems = tree.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("ember.toml:{}: ", at(&text, &name)))
            && problems[0].contains("its notify socket would be"),
        "{problems:?}"
    );
}

/// `{instance}` in a template's dependency lists is not replaced: said so, not only
/// "not defined" (found by a hostile review).
#[test]
fn instance_in_a_templates_dependencies_is_said_not_to_be_replaced() {
    let tree = Tree::new();
    let text = "[service.\"w@\"]\ncommand = [\"/bin/true\"]\nrequires = [\"db@{instance}\"]\n";
    tree.write("ember.toml", text);
    let problems = tree.problems();
    assert!(
        problems.iter().any(
            |p| p.starts_with(&format!("ember.toml:{}: ", at(text, "\"db@")))
                && p.contains("{instance} is not replaced in requires")
        ),
        "{problems:?}"
    );
}

/// Durations take the units the README lists (ms, s, m, h, d), in lower case, in every
/// key: "1M" (a MiB in a size of the same file) is no month, and years, weeks and
/// sub-millisecond units are refused with the units named; the longest is said coherently.
#[test]
fn durations_take_the_documented_units_only() {
    let tree = Tree::new();
    let text = r#"
[service.job]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1M", after_boot = "2w", jitter = "1 m" }
stop_timeout = "1M"
restart_delay = "1y"
restart_delay_max = "5us"
start_limit_interval = "5S"
ready_timeout = "400d"

[service.ok]
command = ["/bin/true"]
stop_timeout = "1h 30m"
restart_delay = "250ms"
restart_delay_max = "2d"
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    let units = "the units are ms, s, m (minutes), h and d (days)";
    let advice = "write e.g. \"250ms\", \"5s\", \"2m\"";
    let month = format!("\"M\" is no unit of time: a size's \"1M\" is 1 MiB, a minute is \"1m\", a month \"30d\"; {units}");
    let expected = [
        format!("ember.toml:{}: invalid duration \"1M\" ({month}); {advice}", at(text, "\"1M\", after")),
        format!("ember.toml:{}: invalid duration \"2w\" (unknown unit \"w\"; {units}); {advice}", at(text, "\"2w\"")),
        format!("ember.toml:{}: invalid duration \"1M\" ({month}); {advice}", at(text, "\"1M\"\n")),
        format!("ember.toml:{}: invalid duration \"1y\" (unknown unit \"y\"; {units}); {advice}", at(text, "\"1y\"")),
        format!("ember.toml:{}: invalid duration \"5us\" (unknown unit \"us\"; {units}); {advice}", at(text, "\"5us\"")),
        format!("ember.toml:{}: invalid duration \"5S\" (unit \"S\" is written in lower case; {units}); {advice}", at(text, "\"5S\"")),
        format!("ember.toml:{}: duration \"400d\" is too long; the longest ember takes is 365 days (\"365d\")", at(text, "\"400d\"")),
    ];
    assert_eq!(problems, expected, "{problems:#?}");
}

/// env: a key is a variable's name (not empty, no `=`, which would end it, no NUL or
/// control character) and a value has no NUL (execve takes C strings), each said at
/// its key or value; a right one beside them is kept.
#[test]
fn env_keys_and_values_are_checked_at_their_position() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/true"]
env = { A = "x\u0000y", "B=C" = "1", "" = "2", "D\nE" = "3", "F\u0000" = "4", OK = "a=b\nc" }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    let expected = [
        format!("ember.toml:{}: env A: its value (\"x\\0y\") contains a NUL byte, which no program can be given", at(text, "\"x\\u")),
        format!("ember.toml:{}: env key \"B=C\" contains '=', which ends a variable's name; name the variable without it", at(text, "\"B=C\"")),
        format!("ember.toml:{}: env key \"\" is empty; name the variable", at(text, "\"\" =")),
        format!("ember.toml:{}: env key \"D\\nE\" contains the control character '\\n'; name the variable with letters, digits and _", at(text, "\"D\\n")),
        format!("ember.toml:{}: env key \"F\\0\" contains a NUL byte, which no program can be given", at(text, "\"F\\u")),
    ];
    let mut sorted = expected.to_vec();
    sorted.sort_by_key(|p| {
        let pos: Vec<usize> = p
            .split(':')
            .skip(1)
            .take(2)
            .map(|n| n.parse().unwrap())
            .collect();
        (pos[0], pos[1])
    });
    assert_eq!(problems, sorted, "{problems:#?}");
    let good = r#"[service.a]
command = ["/bin/true"]
env = { OK = "a=b\nc", _x1 = "" }
"#;
    tree.write("ember.toml", good);
    let loaded = tree.load();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let env = &loaded.config.unwrap().services["a"].env;
    assert_eq!(env.get("OK").map(String::as_str), Some("a=b\nc"));
    assert_eq!(env.get("_x1").map(String::as_str), Some(""));
}

/// A configuration file is read up to MAX_FILE_SIZE, whatever size it says it has: a
/// file past it (the main one, or one of services.d) is refused naming the file and the
/// limit, and /dev/zero (which says 0 bytes and never ends) costs no more than that.
#[test]
fn config_files_are_read_up_to_a_bound() {
    let tree = Tree::new();
    let big = format!("[system]\n# {}\n", "x".repeat(MAX_FILE_SIZE as usize));
    tree.write("ember.toml", &big);
    let limit = "larger than 4 MiB, the most ember reads of a configuration file";
    assert_eq!(
        tree.problems(),
        [format!("ember.toml: cannot read: {limit}")]
    );

    tree.write("ember.toml", "[system]\n");
    let service = format!(
        "command = [\"/bin/true\"]\n# {}\n",
        "x".repeat(MAX_FILE_SIZE as usize)
    );
    tree.write("services.d/big.toml", &service);
    tree.write("services.d/ok.toml", "command = [\"/bin/true\"]\n");
    assert_eq!(
        tree.problems(),
        [format!(
            "services.d/big.toml: service big not loaded: cannot read it: {limit}"
        )]
    );
    // Just at the limit is read.
    let mut at_limit = "command = [\"/bin/true\"]\n#".to_owned();
    at_limit.push_str(&"x".repeat(MAX_FILE_SIZE as usize - at_limit.len() - 1));
    at_limit.push('\n');
    assert_eq!(at_limit.len() as u64, MAX_FILE_SIZE);
    tree.write("services.d/big.toml", &at_limit);
    assert_eq!(tree.problems(), Vec::<String>::new());

    let loaded = load(Path::new("/dev/zero"));
    assert_eq!(
        loaded
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        [format!("/dev/zero: cannot read: {limit}")]
    );
}

/// ready exec is checked as command is (not empty, no NUL, its program found, else a
/// problem of this machine), and ready file is an absolute path as pid_file is; each at
/// its value.
#[test]
fn ready_exec_and_file_are_checked_as_command_and_pid_file() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/sh"]
ready = { exec = [""] }
[service.b]
command = ["/bin/sh"]
ready = { exec = [] }
[service.c]
command = ["/bin/sh"]
ready = { exec = ["/bin/sh", "-c", "x\u0000y"] }
[service.d]
command = ["/bin/sh"]
ready = { exec = ["/nonexistent/check"] }
[service.e]
command = ["/bin/sh"]
ready = { file = "" }
[service.f]
command = ["/bin/sh"]
ready = { file = "run/f.ready" }
[service.g]
command = ["/bin/sh"]
ready = { file = "/run/g\u0000.ready" }
[service.ok]
command = ["/bin/sh"]
ready = { exec = ["sh", "-c", "true"] }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    assert_eq!(
        problems,
        [
            format!("ember.toml:{}: service \"a\": ready exec is empty; give a command such as [\"/bin/check\", \"arg\"]", at(text, "[\"\"]")),
            format!("ember.toml:{}: service \"b\": ready exec is empty; give a command such as [\"/bin/check\", \"arg\"]", at(text, "[] }")),
            format!("ember.toml:{}: service \"c\": ready exec: argument 2 of the command (\"x\\0y\") contains a NUL byte, which no program can be given", at(text, "[\"/bin/sh\", \"-c\", \"x")),
            format!("ember.toml:{}: service \"d\": ready exec: command /nonexistent/check does not exist; give the path of an installed program", at(text, "[\"/nonexistent")),
            format!("ember.toml:{}: service \"e\": ready file must be an absolute path such as \"/run/e.ready\"", at(text, "\"\" }")),
            format!("ember.toml:{}: service \"f\": ready file must be an absolute path such as \"/run/f.ready\"", at(text, "\"run/f.ready\"")),
            format!("ember.toml:{}: service \"g\": ready file \"/run/g\\0.ready\" contains a NUL byte, which no path can hold", at(text, "\"/run/g")),
        ],
        "{problems:#?}"
    );
    // The missing program is this machine's problem, as a command's is: not an error.
    let loaded = tree.load();
    let d = loaded
        .problems
        .iter()
        .find(|p| p.message.contains("\"d\""))
        .unwrap();
    assert_eq!(d.severity, Severity::Runtime);
}

/// A NUL byte can be in no path or name the OS is given: in pid_file, workdir, user,
/// group or an output file it is an error at its value, as in a command, not a service
/// that can never start.
#[test]
fn a_nul_in_a_path_or_account_is_an_error_at_its_value() {
    let tree = Tree::new();
    let text = r#"[service.a]
command = ["/bin/sh"]
type = "forking"
pid_file = "/run/a\u0000.pid"
workdir = "/tmp\u0000x"
user = "r\u0000oot"
group = "w\u0000heel"
stdout = "/var/log/a\u0000.log"
stderr = { file = "b\u0000.log" }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    let nul = "contains a NUL byte, which no path or name can hold";
    assert_eq!(
        problems,
        [
            format!(
                "ember.toml:{}: service \"a\": pid_file \"/run/a\\0.pid\" {nul}",
                at(text, "\"/run/a")
            ),
            format!(
                "ember.toml:{}: service \"a\": workdir \"/tmp\\0x\" {nul}",
                at(text, "\"/tmp")
            ),
            format!(
                "ember.toml:{}: service \"a\": user \"r\\0oot\" {nul}",
                at(text, "\"r\\u")
            ),
            format!(
                "ember.toml:{}: service \"a\": group \"w\\0heel\" {nul}",
                at(text, "\"w\\u")
            ),
            format!(
                "ember.toml:{}: service \"a\": stdout \"/var/log/a\\0.log\" {nul}",
                at(text, "\"/var/log/a")
            ),
            format!(
                "ember.toml:{}: service \"a\": stderr file \"b\\0.log\" {nul}",
                at(text, "\"b\\u")
            ),
        ],
        "{problems:#?}"
    );
}

/// Sizes take the units the README lists, in upper case: K, M, G and T, powers of 1024
/// (as systemd reads them), in every key that takes a size (max_size, memory_max,
/// pids_max and each of `limits`, which share one parser). A lower-case "1m" (a minute in
/// a duration of the same file) or "1k" (a thousand), and "MB" or "MiB", are refused at
/// their value with the unit to write, never taken as a MiB, a KiB or anything else.
#[test]
fn sizes_take_the_documented_units_only() {
    let tree = Tree::new();
    let text = r#"
[service.a]
command = ["/bin/true"]
stdout = { file = "a.log", max_size = "1m" }
memory_max = "64m"
limits = { memlock = "512k", fsize = "1g", data = "2t" }
pids_max = "1MiB"

[service.b]
command = ["/bin/true"]
stderr = { file = "b.log", max_size = "10MB" }
limits = { stack = "8 kb", core = "64Q" }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    let units = "the units are K, M, G and T, powers of 1024";
    let written = |value: &str, unit: &str, canonical: &str, n: u64| {
        format!(
            "ember.toml:{}: invalid size \"{value}\" (unit \"{unit}\" is written \"{canonical}\"; {units}); write \"{n}{canonical}\" for {n} {canonical}iB",
            at(text, &format!("\"{value}\""))
        )
    };
    let expected = [
        written("1m", "m", "M", 1),
        written("64m", "m", "M", 64),
        written("512k", "k", "K", 512),
        written("1g", "g", "G", 1),
        written("2t", "t", "T", 2),
        written("1MiB", "MiB", "M", 1),
        written("10MB", "MB", "M", 10),
        written("8 kb", "kb", "K", 8),
        format!(
            "ember.toml:{}: invalid size \"64Q\" (unknown unit \"Q\"; {units}); write a number, a size such as \"512K\", \"64M\", \"1G\", or \"infinity\"",
            at(text, "\"64Q\"")
        ),
    ];
    assert_eq!(problems, expected, "{problems:#?}");

    // What the README documents keeps working, each at its value.
    tree.write(
        "ember.toml",
        r#"
[service.a]
command = ["/bin/true"]
stdout = { file = "a.log", max_size = "4K" }
stderr = { file = "b.log", max_size = 4096 }
memory_max = "64M"
limits = { memlock = "512K", fsize = "1G", data = "2T", stack = "infinity", nofile = 1024, core = "8 M" }
pids_max = "128"
"#,
    );
    let loaded = tree.load();
    assert_eq!(tree.lines(&loaded), Vec::<String>::new());
    let config = loaded.config.unwrap();
    let a = &config.services["a"];
    use super::limits::Amount;
    assert!(matches!(&a.stdout, Output::Rotated(f) if f.max_size == 4096));
    assert!(matches!(&a.stderr, Output::Rotated(f) if f.max_size == 4096));
    assert_eq!(a.limits.memory_max, Some(Amount::Value(64 << 20)));
    assert_eq!(a.limits.pids_max, Some(Amount::Value(128)));
    let rlimits: Vec<(&str, Amount)> = a
        .limits
        .rlimits
        .iter()
        .map(|r| (r.name, r.amount))
        .collect();
    assert_eq!(
        rlimits,
        vec![
            ("nofile", Amount::Value(1024)),
            ("core", Amount::Value(8 << 20)),
            ("memlock", Amount::Value(512 << 10)),
            ("data", Amount::Value(2 << 40)),
            ("stack", Amount::Infinity),
            ("fsize", Amount::Value(1 << 30)),
        ]
    );
}

/// A zero duration is refused, at its value and with what to write instead, in every key
/// where zero would mean nothing sensible: a stop_timeout of 0 would SIGKILL at once (or,
/// read otherwise, never), a shutdown_timeout of 0 leaves the processes left no moment
/// after SIGTERM, and a start_limit_interval of 0 counts no failures. Where zero means
/// something (no restart delay, a run at boot, no ready timeout, no jitter, ready at once)
/// it is taken, as before. (watchdog, schedule.every, metrics_interval and the hardware
/// watchdog's timeout refuse it already: see their tests.)
#[test]
fn zero_durations_are_refused_where_zero_means_nothing() {
    let tree = Tree::new();
    let text = r#"
[system]
shutdown_timeout = "0s"

[service.a]
command = ["/bin/true"]
stop_timeout = "0s"
start_limit_interval = "0"

[service.b]
command = ["/bin/true"]
stop_timeout = "0ms"
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    let stop = "stop_timeout must be more than 0s: it is how long the service has to stop after its stop_signal, before SIGKILL; to kill it at once, set stop_signal = \"SIGKILL\"";
    let expected = [
        format!(
            "ember.toml:{}: shutdown_timeout must be more than 0s: it is how long the processes left at shutdown have after SIGTERM, before SIGKILL; write e.g. \"5s\" (the default)",
            at(text, "\"0s\"")
        ),
        format!("ember.toml:{}: service \"a\": {stop}", at(text, "\"0s\"\nstart")),
        format!(
            "ember.toml:{}: service \"a\": start_limit_interval must be more than 0s: start_limit counts the failures within it; for no start limit, set start_limit = 0",
            at(text, "\"0\"")
        ),
        format!("ember.toml:{}: service \"b\": {stop}", at(text, "\"0ms\"")),
    ];
    assert_eq!(problems, expected, "{problems:#?}");

    // Where zero means something, it is taken.
    tree.write(
        "ember.toml",
        r#"
[service.c]
command = ["/bin/true"]
restart_delay = "0s"
restart_delay_max = "0ms"
ready = { delay = "0s" }
ready_timeout = "0"

[service.job]
type = "oneshot"
command = ["/bin/true"]
schedule = { every = "1h", after_boot = "0s", jitter = "0s" }
"#,
    );
    let loaded = tree.load();
    assert_eq!(tree.lines(&loaded), Vec::<String>::new());
    let config = loaded.config.unwrap();
    let c = &config.services["c"];
    assert_eq!(c.restart_delay, Duration::ZERO);
    assert_eq!(c.restart_delay_max, Duration::ZERO);
    assert_eq!(c.ready, Readiness::Delay(Duration::ZERO));
    assert_eq!(c.ready_timeout, None);
    let schedule = config.services["job"].schedule.as_deref().unwrap();
    assert_eq!(schedule.after_boot, Some(Duration::ZERO));
    assert_eq!(schedule.jitter, Duration::ZERO);
}

/// A rotated output file that is there and is not a regular file (a device, a FIFO, a
/// symlink, a directory) is said by `ember check`, at its value: ember would not write it.
/// A Runtime problem, as a missing workdir is: the boot goes on, and the file is refused
/// when it is written.
#[test]
fn a_rotated_file_that_is_not_a_regular_file_fails_check() {
    let tree = Tree::new();
    let dir = tree.root.display().to_string();
    std::os::unix::fs::symlink("/etc/hostname", tree.root.join("link.log")).unwrap();
    std::fs::create_dir_all(tree.root.join("dir.log")).unwrap();
    let text = format!(
        r#"[service.a]
command = ["/bin/true"]
stdout = {{ file = "/dev/null" }}
stderr = {{ file = "{dir}/link.log" }}

[service.b]
command = ["/bin/true"]
stdout = {{ file = "{dir}/dir.log", keep = 2 }}
stderr = {{ file = "{dir}/new.log" }}

[service."c@"]
command = ["/bin/true"]
stdout = {{ file = "/dev/{{instance}}" }}

[service.d]
command = ["/bin/true"]
stdout = {{ file = "/proc/self/comm" }}
"#
    );
    tree.write("ember.toml", &text);
    let loaded = tree.load();
    let rule = "ember writes only files it can rotate";
    assert_eq!(
        tree.lines(&loaded),
        [
            format!(
                "ember.toml:{}: service \"a\": stdout file /dev/null is a character device, not a regular file: {rule} (for a device or a FIFO, write stdout = \"/dev/null\", which the service writes itself)",
                at(&text, "\"/dev/null\"")
            ),
            format!(
                "ember.toml:{}: service \"a\": stderr file {dir}/link.log is a symbolic link, not a regular file: {rule} (for a device or a FIFO, write stderr = \"{dir}/link.log\", which the service writes itself)",
                at(&text, "\"{dir}/link.log\"".replace("{dir}", &dir).as_str())
            ),
            format!(
                "ember.toml:{}: service \"b\": stdout file {dir}/dir.log is a directory, not a regular file: {rule} (for a device or a FIFO, write stdout = \"{dir}/dir.log\", which the service writes itself)",
                at(&text, "\"{dir}/dir.log\"".replace("{dir}", &dir).as_str())
            ),
            format!(
                "ember.toml:{}: service \"d\": stdout file /proc/self/comm is on a kernel filesystem (procfs), not on a disk: ember neither writes nor rotates a file there",
                at(&text, "\"/proc/self/comm\"")
            ),
        ]
    );
    assert!(loaded
        .problems
        .iter()
        .all(|p| p.severity == Severity::Runtime));
    assert!(loaded.config.is_some());
}

/// What a rotated file's path cannot be, said by `ember check` for a file under log_dir
/// too (a relative `file`, which was never looked at), and for one whose directory cannot
/// be made (a part of it is a regular file: a log_dir that is a file failed every
/// relative output at run time only), and a `file` that ends in "/" (a directory's name,
/// which ember check passed and no open could make). Runtime problems, as a file that is
/// a directory is: a boot goes on.
#[test]
fn a_rotated_file_under_log_dir_or_in_no_directory_fails_check() {
    let tree = Tree::new();
    let dir = tree.root.display().to_string();
    std::fs::create_dir_all(tree.root.join("logs/dir.log")).unwrap();
    tree.write("plain", "");
    let text = format!(
        r#"[system]
log_dir = "{dir}/logs"

[service.a]
command = ["/bin/true"]
stdout = {{ file = "dir.log" }}
stderr = {{ file = "{dir}/plain/a.log" }}

[service.b]
command = ["/bin/true"]
stdout = {{ file = "b/" }}
stderr = {{ file = "fine.log" }}
"#
    );
    tree.write("ember.toml", &text);
    let rule = "ember writes only files it can rotate";
    assert_eq!(
        tree.problems(),
        [
            format!(
                "ember.toml:{}: service \"a\": stdout file {dir}/logs/dir.log is a directory, not a regular file: {rule} (for a device or a FIFO, write stdout = \"{dir}/logs/dir.log\", which the service writes itself)",
                at(&text, "\"dir.log\"")
            ),
            format!(
                "ember.toml:{}: service \"a\": stderr file {dir}/plain/a.log cannot be made: {dir}/plain is a regular file, not a directory",
                at(&text, "\"{dir}/plain/a.log\"".replace("{dir}", &dir).as_str())
            ),
            format!(
                "ember.toml:{}: service \"b\": file must name a file, e.g. \"b.log\" (under [system] log_dir) or \"/var/log/b.log\"",
                at(&text, "\"b/\"")
            ),
        ]
    );
    // Runtime problems: a boot goes on (reload and check refuse them).
    let loaded = tree.load();
    assert!(loaded
        .problems
        .iter()
        .all(|p| p.severity == Severity::Runtime));
    assert!(loaded.config.is_some());
    // log_dir itself a file: every relative file is said.
    let text = format!(
        "[system]\nlog_dir = \"{dir}/plain\"\n\n[service.c]\ncommand = [\"/bin/true\"]\nstdout = {{ file = \"c.log\" }}\n"
    );
    tree.write("ember.toml", &text);
    assert_eq!(
        tree.problems(),
        [format!(
            "ember.toml:{}: service \"c\": stdout file {dir}/plain/c.log cannot be made: {dir}/plain is a regular file, not a directory",
            at(&text, "\"c.log\"")
        )]
    );
}

/// One file written by two outputs with different bounds (stdout with max_size "4K",
/// stderr with "8K", into the same file) grew past the smaller one: each line was rotated
/// by its own output's settings. The same bounds are fine (both streams in one log). A
/// warning: a board whose file has it boots as before.
#[test]
fn one_rotated_file_with_two_bounds_is_warned_of() {
    let tree = Tree::new();
    let dir = tree.root.display().to_string();
    let text = format!(
        r#"[system]
log_dir = "{dir}/logs"

[service.a]
command = ["/bin/true"]
stdout = {{ file = "same.log", max_size = "4K", keep = 2 }}
stderr = {{ file = "same.log", max_size = "8K", keep = 2 }}

[service.b]
command = ["/bin/true"]
stdout = {{ file = "{dir}/logs/same.log", max_size = "4K", keep = 3 }}

[service.c]
command = ["/bin/true"]
stdout = {{ file = "both.log" }}
stderr = {{ file = "both.log", max_size = "1M", keep = 3 }}
"#
    );
    tree.write("ember.toml", &text);
    let first = format!("{dir}/logs/same.log");
    assert_eq!(
        tree.problems(),
        [
            format!(
                "ember.toml:{}: warning: service \"a\": stderr file {first} is also stdout of a, with max_size 4096 and keep 2: one file has one bound; give each the same max_size and keep",
                at(&text, "\"same.log\", max_size = \"8K\"")
            ),
            format!(
                "ember.toml:{}: warning: service \"b\": stdout file {first} is also stdout of a, with max_size 4096 and keep 2: one file has one bound; give each the same max_size and keep",
                at(&text, &format!("\"{first}\""))
            ),
        ]
    );
}

/// `[system] log_dir` and the watchdog `device` hold no NUL, said at their value as for
/// any other path: a log_dir with one made every relative output file unwritable, said
/// only at run time, and the device's was said as a driver not loaded.
#[test]
fn log_dir_and_the_watchdog_device_hold_no_nul() {
    let tree = Tree::new();
    let text =
        "[system]\nlog_dir = \"/var/lo\\u0000g\"\nwatchdog = { device = \"/dev/wd\\u0000\" }\n";
    tree.write("ember.toml", text);
    let loaded = tree.load();
    assert_eq!(
        tree.lines(&loaded),
        [
            format!(
                "ember.toml:{}: log_dir \"/var/lo\\0g\" contains a NUL byte, which no path can hold",
                at(text, "\"/var/lo")
            ),
            format!(
                "ember.toml:{}: watchdog device \"/dev/wd\\0\" contains a NUL byte, which no path can hold",
                at(text, "\"/dev/wd")
            ),
        ]
    );
    assert!(loaded.config.is_none());
}

/// Columns are counted as an editor shows them: a byte-order mark (which some Windows
/// editors write first) is not one, nor is CRLF's CR before the end of a line.
#[test]
fn a_bom_and_crlf_do_not_move_the_columns() {
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        "\u{feff}[servic]\r\nx = 1\r\n[service.a]\r\ncommand = [\"/bin/true\"]\r\nrestart = \"no\"\r\n",
    );
    let problems = tree.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ember.toml:1:2: unknown section \"servic\"")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ember.toml:5:11: unknown variant `no`")),
        "{problems:#?}"
    );
}

#[test]
fn a_ready_tcp_address_that_nothing_can_accept_on_is_refused() {
    // Each was taken, and the service then waited its whole ready_timeout (or for ever,
    // with "0") for a connection that can never be made.
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
ready = { tcp = "127.0.0.1:0" }
[service.b]
command = ["/bin/sh"]
ready = { tcp = "[::1]:0" }
[service.c]
command = ["/bin/sh"]
ready = { tcp = "224.0.0.1:80" }
[service.d]
command = ["/bin/sh"]
ready = { tcp = "255.255.255.255:80" }
[service.e]
command = ["/bin/sh"]
ready = { tcp = "[ff02::1]:80" }
[service.f]
command = ["/bin/sh"]
ready = { tcp = "[::1]:8080" }
[service.g]
command = ["/bin/sh"]
ready = { tcp = "0.0.0.0:8080" }
"#,
    );
    let problems = tree.problems();
    assert_eq!(
        problems,
        [
            "ember.toml:3:9: service \"a\": ready tcp \"127.0.0.1:0\" names port 0, on which nothing can be connected to; give the port the service listens on",
            "ember.toml:6:9: service \"b\": ready tcp \"[::1]:0\" names port 0, on which nothing can be connected to; give the port the service listens on",
            "ember.toml:9:9: service \"c\": ready tcp \"224.0.0.1:80\" is a multicast or broadcast address, to which no TCP connection can be made; give the address the service listens on, such as \"127.0.0.1:80\"",
            "ember.toml:12:9: service \"d\": ready tcp \"255.255.255.255:80\" is a multicast or broadcast address, to which no TCP connection can be made; give the address the service listens on, such as \"127.0.0.1:80\"",
            "ember.toml:15:9: service \"e\": ready tcp \"[ff02::1]:80\" is a multicast or broadcast address, to which no TCP connection can be made; give the address the service listens on, such as \"127.0.0.1:80\"",
        ],
        "{problems:#?}"
    );
}

#[test]
fn a_ready_log_pattern_too_costly_to_match_is_refused() {
    // Each line a starting service writes is matched in PID 1's loop, at a cost of about
    // the compiled pattern's size times the line's: this one took seconds a line.
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
ready = { log = "(?:.*a){1000}z" }
[service.b]
command = ["/bin/sh"]
ready = { log = "^\\[\\d{4}-\\d\\d-\\d\\d [0-9:.]+\\] (INFO|WARN) server (started|ready) on port \\d{2,5}$" }
[service.c]
command = ["/bin/sh"]
ready = { log = "database system is ready to accept connections" }
"#,
    );
    let problems = tree.problems();
    assert_eq!(
        problems,
        ["ember.toml:3:9: service \"a\": ready log pattern \"(?:.*a){1000}z\" is too costly to match against every line: it compiles to more than 32 KiB; shorten it (large counted repetitions such as {100}, and \\w or \\d, which stand for every Unicode letter or digit, cost most)"],
        "{problems:#?}"
    );
}

#[test]
fn a_relative_workdir_is_refused() {
    // It was looked for from where `ember check` ran, and taken at run time from ember's
    // own working directory (/ at boot): two answers, neither what the file says.
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
workdir = "tmp"
[service."w@"]
command = ["/bin/sh"]
workdir = "{instance}/data"
[service.c]
command = ["/bin/sh"]
workdir = "/tmp"
"#,
    );
    let problems = tree.problems();
    assert_eq!(
        problems,
        [
            "ember.toml:3:11: service \"a\": workdir \"tmp\" must be an absolute path such as \"/var/lib/a\"",
            "ember.toml:6:11: service \"w@\": workdir \"{instance}/data\" must be an absolute path such as \"/var/lib/w@\"",
        ],
        "{problems:#?}"
    );
}

#[test]
fn an_id_of_minus_one_is_refused() {
    // (uid_t)-1 passed the check, and every start then failed in setuid with EINVAL.
    let tree = Tree::new();
    tree.write(
        "ember.toml",
        r#"[service.a]
command = ["/bin/sh"]
user = "4294967295"
[service.b]
command = ["/bin/sh"]
group = "4294967295"
[service.c]
command = ["/bin/sh"]
user = "4294967294"
group = "0"
"#,
    );
    let problems = tree.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("ember.toml:3:8: ")
            && problems[0].contains("user id 4294967295 is (uid_t)-1"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("ember.toml:6:9: ") && problems[1].contains("group id 4294967295"),
        "{problems:#?}"
    );
}

/// Found by a hostile review: an instance whose name ends with `@` (`instances =
/// ["a@"]`, or `requires = ["worker@a@"]`) passed `ember check`, and was then taken for a
/// template (its name ends with @): it never ran, and the service requiring it waited
/// for a template. Such a name is refused where it is written, as a start of it is.
#[test]
fn an_instance_named_like_a_template_is_refused() {
    let tree = Tree::new();
    let text = r#"[service."worker@"]
command = ["/bin/sh"]
instances = ["a@"]

[service.web]
command = ["/bin/sh"]
requires = ["worker@b@"]
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    for want in [
        "ember.toml:3:13: template \"worker@\": instance \"a@\": invalid instance \"a@\" of worker@: it ends with @",
        "ember.toml:7:13: service \"web\" requires \"worker@b@\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{}",
            problems.join("\n")
        );
    }
    assert!(crate::config::values::check_instance("worker@", "x@").is_err());
    assert!(crate::config::values::check_instance("worker@", "x@y").is_ok());
}

/// Found by a hostile review: `instances = N` is bounded (1 to 1024), but a list was not,
/// and each name was looked for among those before it: a list of 100,000 names (1 MiB,
/// well within a file's bound) kept `ember check`, and PID 1 at boot, comparing names
/// for minutes before it made 100,000 services. A list has the bound a number has.
#[test]
fn a_pool_listed_by_name_has_the_bound_a_number_has() {
    let tree = Tree::new();
    let names: Vec<String> = (0..100_000).map(|n| format!("\"n{n}\"")).collect();
    let text = format!(
        "[service.\"worker@\"]\ncommand = [\"/bin/sh\"]\ninstances = [{}]\n",
        names.join(",")
    );
    tree.write("ember.toml", &text);
    let problems = tree.problems();
    assert_eq!(
        problems.len(),
        1,
        "{:?}",
        &problems[..problems.len().min(3)]
    );
    assert!(
        problems[0].starts_with(
            "ember.toml:3:13: instances lists 100000 names: a pool has 1 to 1024 instances"
        ),
        "{problems:?}"
    );
    // At the bound, each name is still checked, and a name listed twice is still said.
    let mut names: Vec<String> = (0..1024).map(|n| format!("\"n{n}\"")).collect();
    names[1023] = "\"n7\"".to_owned();
    let text = format!(
        "[service.\"worker@\"]\ncommand = [\"/bin/sh\"]\ninstances = [{}]\n",
        names.join(",")
    );
    tree.write("ember.toml", &text);
    let problems = tree.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("instance \"n7\": it is listed twice"),
        "{problems:?}"
    );
}

/// Found by a hostile review: an instance's name in `instances` was shown whole in the
/// problem about it (twice: in the problem and in its reason), so one name of 60 KB made
/// a line of 120 KB. It is shortened, as a service's name is.
#[test]
fn a_long_instance_name_is_shown_shortened() {
    let tree = Tree::new();
    let text = format!(
        "[service.\"worker@\"]\ncommand = [\"/bin/sh\"]\ninstances = [\".{}\"]\n",
        "x".repeat(60_000)
    );
    tree.write("ember.toml", &text);
    let problems = tree.problems();
    assert_eq!(problems.len(), 1, "{} bytes", problems.concat().len());
    assert!(problems[0].len() < 600, "{} bytes", problems[0].len());
    assert!(
        problems[0].contains("invalid instance"),
        "{}",
        &problems[0][..300]
    );
}

/// Found by a hostile review: `instances = -3` or `instances = 99999999999999` was
/// "expected u32", and `instances = [1, 2]` "invalid type: integer `1`, expected a
/// string": words of the parser's, where the other counts (0, 1025) say what a pool may
/// be. Each now says what to write.
#[test]
fn a_pool_of_the_wrong_shape_says_what_to_write() {
    let tree = Tree::new();
    for (value, said) in [
        ("-3", "instances = -3: a pool has 1 to 1024 instances"),
        (
            "99999999999999",
            "instances = 99999999999999: a pool has 1 to 1024 instances",
        ),
        (
            "[1, 2]",
            "instances = [1, 2]: an instance's name is a string: write instances = [\"1\", \"2\"]",
        ),
    ] {
        let text = format!("[service.\"worker@\"]\ncommand = [\"/bin/sh\"]\ninstances = {value}\n");
        tree.write("ember.toml", &text);
        let problems = tree.problems();
        assert_eq!(problems.len(), 1, "{value}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("ember.toml:3:13: {said}")),
            "{value}: {problems:?}"
        );
    }
}

/// Found by a hostile review: `{instance}` where it is not replaced (as systemd's `%i` is
/// in User=) was said as something else: `user = "{instance}"` as a user that does not
/// exist, `ready = { log = "up {instance}" }` as a regex that is not valid ("expected
/// decimal number"), and in an env variable's name not at all. Each now says that
/// `{instance}` is not replaced there, and where it is, as for the dependency lists.
#[test]
fn instance_where_it_is_not_replaced_is_said_so() {
    let tree = Tree::new();
    let text = r#"[service."w@"]
command = ["/bin/sh"]
user = "{instance}"
group = "g-{instance}"
env = { "V" = "v-{instance}" }
ready = { log = "up {instance}" }
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    for want in [
        "ember.toml:3:8: service \"w@\": {instance} is not replaced in user (only in command, env values, workdir, pid_file, stdout, stderr and ready's file or exec)",
        "ember.toml:4:9: service \"w@\": {instance} is not replaced in group (only in",
        "ember.toml:6:9: service \"w@\": {instance} is not replaced in ready's log pattern (only in",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(problems.len(), 3, "{problems:#?}");
    tree.write(
        "ember.toml",
        "[service.\"w@\"]\ncommand = [\"/bin/sh\"]\nenv = { \"K_{instance}\" = \"v\" }\n",
    );
    let problems = tree.problems();
    assert!(
        problems.iter().any(|p| p.starts_with("ember.toml:3:9: env key \"K_{instance}\": {instance} is not replaced in a variable's name (only in its value)")),
        "{problems:#?}"
    );
    tree.write(
        "ember.toml",
        "[service.\"w@\"]\ncommand = [\"/bin/sh\"]\nready = { tcp = \"127.0.0.1:{instance}\" }\n",
    );
    let problems = tree.problems();
    assert!(
        problems.iter().any(|p| p.starts_with("ember.toml:3:9: service \"w@\": {instance} is not replaced in ready's tcp address (only in")),
        "{problems:#?}"
    );
}

/// Found by a hostile review: a template whose pid_file or ready file has no `{instance}`
/// gives every instance the same file, so one instance read another's pid (and a stop of
/// it signalled the other's process), or was taken for ready when another was; `ember
/// check` said nothing. It warns, with what to write.
#[test]
fn a_file_every_instance_of_a_template_would_share_is_warned_of() {
    let tree = Tree::new();
    let text = r#"[service."f@"]
command = ["/bin/sh"]
type = "forking"
pid_file = "/run/f.pid"

[service."r@"]
command = ["/bin/sh"]
ready = { file = "/run/r.ready" }

[service."ok@"]
command = ["/bin/sh"]
type = "forking"
pid_file = "/run/ok-{instance}.pid"
"#;
    tree.write("ember.toml", text);
    let problems = tree.problems();
    for want in [
        "ember.toml:1:10: warning: template \"f@\": pid_file \"/run/f.pid\" has no {instance}: every instance would use this one file",
        "ember.toml:6:10: warning: template \"r@\": ready's file \"/run/r.ready\" has no {instance}: every instance would use this one file",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(problems.len(), 2, "{problems:#?}");
}
