//! `ember analyze` on a real boot: services with known delays and a dependency chain,
//! real processes; the plot parsed by a real XML parser (python3's xml.etree) and
//! rendered to a PNG by a real browser (Debian's chromium), whose pixels are checked.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};

/// base (a oneshot, ~50 ms) -> db (ready after 800 ms) -> web (400 ms) -> api (200 ms);
/// quick has no readiness check; crashy fails twice and stops at its start limit. ember runs
/// as a plain child (no root needed): killing it would leave its services behind, so the
/// test stops it, and the sleeps end by themselves if the test fails first.
const BOOT: &str = r#"
[service.base]
command = ["/bin/sleep", "0.05"]
type = "oneshot"

[service.db]
command = ["/bin/sleep", "120"]
after = ["base"]
ready = { delay = "800ms" }

[service.web]
command = ["/bin/sleep", "120"]
requires = ["db"]
ready = { delay = "400ms" }

[service.quick]
command = ["/bin/sleep", "120"]

[service.api]
command = ["/bin/sleep", "120"]
requires = ["web"]
wants = ["quick"]
ready = { delay = "200ms" }

[service.crashy]
command = ["/bin/sh", "-c", "exit 3"]
restart_delay = "50ms"
start_limit = 2
"#;

fn analyze(ember: &Ember, args: &[&str]) -> Output {
    Command::new(EMBER)
        .arg("analyze")
        .arg("--socket")
        .arg(&ember.socket)
        .args(args)
        .output()
        .expect("run ember analyze")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ember analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The raw `timeline` reply, straight from the socket.
fn timeline(ember: &Ember) -> Value {
    let mut stream = UnixStream::connect(&ember.socket).expect("connect");
    stream.write_all(b"{\"cmd\":\"timeline\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).expect("timeline JSON");
    reply["timeline"].clone()
}

/// "734us", "4.21ms", "502ms", "1.503s" in microseconds.
fn parse_span(text: &str) -> u64 {
    let (number, unit) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        panic!("not a span: {text:?}")
    };
    (number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a span: {text:?}"))
        * unit) as u64
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses the SVG with xml.etree (raises on anything not well-formed) and lists the
/// service rows in document order with what each draws.
const READ_SVG: &str = r#"
import json, sys, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
rows = []
for g in root.iter("{http://www.w3.org/2000/svg}g"):
    if g.get("class") != "service":
        continue
    classes = [e.get("class") for e in g.iter() if e.get("class")]
    rows.append({"name": g.get("data-service"), "classes": classes,
                 "title": g.find("s:title", ns).text})
print(json.dumps({"width": root.get("width"), "height": root.get("height"), "rows": rows}))
"#;

/// Decodes a PNG with zlib alone (signature, IHDR, IDAT, scanline filters) and counts
/// its colours: the size, how many distinct colours, and pixels near the plot's colours.
const READ_PNG: &str = r#"
import json, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
width, height, depth, colour, _, _, interlace = ihdr
assert depth == 8 and colour in (2, 6) and interlace == 0, ihdr
bpp = 4 if colour == 6 else 3
raw = zlib.decompress(idat)
stride = width * bpp
prev = bytearray(stride)
counts, near = {}, {"active": 0, "activating": 0, "failure": 0, "text": 0}
targets = {"active": (0x4c, 0xaf, 0x6e), "activating": (0xf2, 0xb3, 0x3d),
           "failure": (0xd7, 0x26, 0x3d), "text": (0x1d, 0x23, 0x30)}
for y in range(height):
    start = y * (stride + 1)
    kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1: line[i] = (line[i] + a) & 255
        elif kind == 2: line[i] = (line[i] + b) & 255
        elif kind == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 255
    for x in range(0, stride, bpp):
        px = tuple(line[x:x + 3])
        counts[px] = counts.get(px, 0) + 1
        for name, t in targets.items():
            if all(abs(p - q) <= 12 for p, q in zip(px, t)):
                near[name] += 1
    prev = line
white = counts.get((255, 255, 255), 0)
print(json.dumps({"width": width, "height": height, "colours": len(counts),
                  "not_white": width * height - white, "near": near}))
"#;

#[test]
fn blame_chain_and_plot_of_a_real_boot() {
    let mut ember = Ember::start_plain("analyze", BOOT);
    ember.wait_state("api", "active", Some("running"), LONG);
    ember.wait_state("crashy", "failed", Some("start-limit"), LONG);

    // Blame: slowest first, each at least its readiness delay.
    let blame = stdout(&analyze(&ember, &["blame"]));
    let rows: Vec<(u64, &str)> = blame
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let time = words.next()?;
            let name = words.next()?;
            (time != "-").then(|| (parse_span(time), name))
        })
        .collect();
    // Sorted slowest first. (Not "db, web, api, base" by name: on a busy machine quick,
    // which has no readiness wait, can take longer to spawn than base takes to run.)
    assert!(
        rows.windows(2).all(|w| w[0].0 >= w[1].0),
        "not slowest first:\n{blame}"
    );
    for (name, at_least) in [
        ("db", 800_000),
        ("web", 400_000),
        ("api", 200_000),
        ("base", 50_000),
    ] {
        let took = rows.iter().find(|r| r.1 == name).map(|r| r.0).unwrap();
        assert!(took >= at_least, "{name} took {took} us:\n{blame}");
    }
    assert!(
        blame.contains("crashy (now failed (start-limit))"),
        "{blame}"
    );

    // The critical chain of the last service to become active.
    let chain = stdout(&analyze(&ember, &["critical-chain"]));
    let links: Vec<&str> = chain
        .lines()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .collect();
    let expect = ["api @", "└─web @", "  └─db @", "    └─base @"];
    assert_eq!(links.len(), expect.len(), "{chain}");
    let mut times = Vec::new();
    for (line, prefix) in links.iter().zip(expect) {
        assert!(
            line.starts_with(prefix),
            "{line:?} is not {prefix:?}:\n{chain}"
        );
        // "name @active +took"
        let words: Vec<&str> = line.split_whitespace().collect();
        let active = parse_span(words[1].trim_start_matches('@'));
        let took = parse_span(words[2].trim_start_matches('+'));
        times.push((active, took));
    }
    for pair in times.windows(2) {
        let ((active, took), (dep_active, _)) = (pair[0], pair[1]);
        // Each was spawned after what it waited for became active (to the printed
        // precision: under a millisecond each).
        assert!(
            active.saturating_sub(took) + 2_000 >= dep_active,
            "{pair:?}:\n{chain}"
        );
    }
    let web = stdout(&analyze(&ember, &["critical-chain", "web"]));
    let links: Vec<&str> = web.lines().skip_while(|l| !l.is_empty()).skip(1).collect();
    assert_eq!(links.len(), 3, "{web}");
    for (line, prefix) in links.iter().zip(["web @", "└─db @", "  └─base @"]) {
        assert!(
            line.starts_with(prefix),
            "{line:?} is not {prefix:?}:\n{web}"
        );
    }
    let nope = analyze(&ember, &["critical-chain", "nope"]);
    assert_eq!(nope.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nope.stderr).contains("no service named \"nope\""));

    // The same analysis from a saved timeline.
    let saved = ember.dir.path("timeline.json");
    std::fs::write(&saved, stdout(&analyze(&ember, &["dump"]))).unwrap();
    let from_file = Command::new(EMBER)
        .args(["analyze", "--from"])
        .arg(&saved)
        .arg("blame")
        .output()
        .unwrap();
    assert_eq!(stdout(&from_file), blame);

    // The plot: well-formed, a row per service in the order they were spawned.
    let svg = stdout(&analyze(&ember, &["plot"]));
    let svg_path = ember.dir.path("boot.svg");
    std::fs::write(&svg_path, &svg).unwrap();
    let t = timeline(&ember);
    // Everything is asked: stop ember and its services.
    ember.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(ember.wait_exit(LONG), Some(0), "{}", ember.log());
    let parsed: Value =
        serde_json::from_str(&python(READ_SVG, &[&svg_path.display().to_string()])).unwrap();
    let rows = parsed["rows"].as_array().unwrap();
    let drawn: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut spawned: Vec<(u64, &str)> = t["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["first_spawn_usec"].as_u64().unwrap(),
                s["name"].as_str().unwrap(),
            )
        })
        .collect();
    spawned.sort();
    let by_spawn: Vec<&str> = spawned.iter().map(|s| s.1).collect();
    assert_eq!(drawn, by_spawn);
    let position = |name: &str| drawn.iter().position(|n| *n == name).unwrap();
    assert!(position("base") < position("db"));
    assert!(position("db") < position("web"));
    assert!(position("web") < position("api"));
    for row in rows {
        let classes: Vec<&str> = row["classes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        // A oneshot that finished is drawn as done (exited).
        assert!(
            classes.contains(&"active") || classes.contains(&"exited"),
            "{} has no active bar: {classes:?}",
            row["name"]
        );
        let name = row["name"].as_str().unwrap();
        if ["db", "web", "api", "base"].contains(&name) {
            assert!(classes.contains(&"activating"), "{name}: {classes:?}");
        }
        if name == "crashy" {
            let count = |c: &str| classes.iter().filter(|x| **x == c).count();
            assert_eq!(count("failure"), 2, "{classes:?}");
            assert_eq!(count("restart"), 1, "{classes:?}");
        }
    }

    // A real browser draws it: a 1200x800 PNG with the bars' colours in it.
    if !have_chromium() {
        return;
    }
    let png = ember.dir.path("boot.png");
    let profile = ember.dir.path("chromium-profile");
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,800")
        .arg(format!("file://{}", svg_path.display()))
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(&python(READ_PNG, &[&png.display().to_string()])).unwrap();
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(1200), Some(800))
    );
    assert!(seen["colours"].as_u64().unwrap() > 20, "{seen}");
    let near = |c: &str| seen["near"][c].as_u64().unwrap();
    // Bars 14 px high: a few hundred px of each colour at the least.
    assert!(near("active") > 2_000, "{seen}");
    assert!(near("activating") > 500, "{seen}");
    assert!(near("failure") > 20, "{seen}");
    assert!(near("text") > 200, "{seen}");
    if let Ok(keep) = std::env::var("EMBER_KEEP_PLOT") {
        let _ = std::fs::copy(&png, keep);
    }
}

#[test]
fn verify_adds_warnings_to_check() {
    let dir = TempDir::new("verify");
    std::fs::create_dir_all(dir.path("services.d")).unwrap();
    let main = r#"[service.db]
command = ["/bin/sleep", "1000"]

[service.web]
command = ["/bin/sleep", "1000"]
requires = ["db", "cache"]
ready = { delay = "1s" }

[service.cache]
command = ["/bin/sleep", "1000"]
ready = { delay = "1s" }
enabled = false

[service.init]
command = ["/bin/true"]
type = "oneshot"
restart = "always"
"#;
    std::fs::write(dir.path("ember.toml"), main).unwrap();
    std::fs::write(
        dir.path("services.d/app.toml"),
        "command = [\"/bin/sleep\", \"1000\"]\nrequires = [\"web\"]\n",
    )
    .unwrap();
    let verify = |path: &std::path::Path| {
        Command::new(EMBER)
            .args(["analyze", "verify", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&dir.path("ember.toml"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "warnings only: {text}");
    let main_path = dir.path("ember.toml").display().to_string();
    let expect = [
        format!("{main_path}:1:10: warning: service \"db\" is required by web but has no readiness check"),
        format!("{main_path}:6:19: warning: service \"web\" cannot start at boot: it requires \"cache\", which is disabled (enabled = false)"),
        format!("{main_path}:17:11: warning: service \"init\": a oneshot is not run again after it exits 0"),
        "services.d/app.toml:2:13: warning: service \"app\" cannot start at boot: it requires \"web\", which requires \"cache\", which is disabled".to_string(),
        format!("{main_path}: ok, 5 services (4 warnings)"),
    ];
    for e in &expect {
        assert!(
            text.lines().any(|l| l.contains(e.as_str())),
            "missing {e:?} in:\n{text}"
        );
    }
    // Ordered by file and line, as `ember check` prints.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[3].contains("app.toml"), "{text}");
    // `ember check` alone does not warn about these.
    let check = Command::new(EMBER)
        .args(["check", "--config"])
        .arg(dir.path("ember.toml"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        format!("{main_path}: ok, 5 services")
    );
    // Errors are check's, and fail verify too.
    std::fs::write(
        dir.path("ember.toml"),
        "[service.a]\ncommand = [\"/bin/true\"]\nrequires = [\"b\"]\n",
    )
    .unwrap();
    let out = verify(&dir.path("ember.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("service \"a\" requires \"b\", which is not defined"));
}

/// A timeline from elsewhere (`--from FILE`, a board's dump mailed in) may hold any name:
/// one with an escape sequence went raw to the terminal in blame and critical-chain, one
/// with a newline forged a row. Names ember writes follow the name rule; others are refused.
#[test]
fn a_saved_timeline_with_names_ember_never_writes_is_refused() {
    let dir = TempDir::new("analyze-hostile");
    let file = dir.path("boot.json");
    for (name, after) in [
        ("evil\u{1b}]0;owned\u{7}\u{1b}[2J", "db"),
        ("web", "db\nforged 1.00s row"),
    ] {
        let timeline = serde_json::json!({
            "device": "board", "role": "machine", "started_usec": 1, "now_usec": 2_000_000,
            "services": [{
                "name": name, "kind": "simple", "ready": "none", "enabled": true,
                "after": [after], "first_spawn_usec": 1000, "first_active_usec": 2000,
                "spawns": 1, "failures": 0, "dropped": 0, "transitions": [],
            }],
        });
        std::fs::write(&file, timeline.to_string()).unwrap();
        for command in ["blame", "critical-chain"] {
            let out = Command::new(EMBER)
                .args(["analyze", "--from"])
                .arg(&file)
                .arg(command)
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert_eq!(out.status.code(), Some(1), "{command}: {stdout}{stderr}");
            assert!(!stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'));
            assert!(
                stderr.contains("is not a timeline ember wrote")
                    && stderr.contains("invalid service name"),
                "{stderr}"
            );
        }
    }
}

/// `--from /dev/zero` (or any endless file) was read without end, into memory.
#[test]
fn an_endless_saved_timeline_is_read_up_to_a_bound() {
    let mut child = Command::new(EMBER)
        .args(["analyze", "--from", "/dev/zero", "blame"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    if !wait_for(scaled(LONG), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }) {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("ember analyze --from /dev/zero did not finish");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read /dev/zero: larger than 64 MiB"),
        "{err}"
    );
}

#[test]
fn without_ember_the_errors_say_what_to_do() {
    let dir = TempDir::new("analyze-none");
    let out = Command::new(EMBER)
        .args(["analyze", "--socket"])
        .arg(dir.path("nothing.sock"))
        .arg("blame")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Is ember running?"), "{err}");
    let out = Command::new(EMBER)
        .args(["analyze", "explode"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("commands are blame, critical-chain, plot, dump, verify"));
    let help = Command::new(EMBER)
        .args(["analyze", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "blame",
        "critical-chain",
        "plot",
        "dump",
        "verify",
        "--socket",
        "--config",
        "--from",
    ] {
        assert!(help.contains(word), "analyze --help lacks {word}");
    }
    let help = Command::new(EMBER).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("ember analyze"));
}

/// A timeline from elsewhere may hold any number: times near 2^64 µs made `plot` (and
/// the others' sums) overflow, and the tool died of a panic. Times past what a board
/// could have run are refused, with what to do.
#[test]
fn a_saved_timeline_with_times_ember_never_writes_is_refused() {
    let dir = TempDir::new("analyze-huge");
    let file = dir.path("boot.json");
    let huge = u64::MAX;
    for (uptime, at) in [(huge, 2_000u64), (1_000, huge)] {
        let timeline = serde_json::json!({
            "device": "board", "role": "machine", "uptime_at_start_usec": uptime,
            "started_usec": 1, "now_usec": 2_000_000, "boot_complete_usec": at,
            "services": [{
                "name": "web", "kind": "simple", "ready": "none", "enabled": true,
                "first_spawn_usec": 1000, "first_active_usec": at,
                "spawns": 1, "failures": 0, "dropped": 0,
                "transitions": [{"at_usec": at, "state": "active", "sub_state": "running", "run": 1}],
            }],
        });
        std::fs::write(&file, timeline.to_string()).unwrap();
        for command in ["blame", "critical-chain", "plot"] {
            let out = Command::new(EMBER)
                .args(["analyze", "--from"])
                .arg(&file)
                .arg(command)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
            assert!(
                stderr.contains("is not a timeline ember wrote") && stderr.contains("time"),
                "{command}: {stderr}"
            );
        }
    }
}
