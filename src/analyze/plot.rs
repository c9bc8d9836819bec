//! `ember analyze plot`: an SVG timeline of the boot, written by hand (no plotting crate).
//!
//! One row per service, in the order they were first spawned: a bar while activating
//! (spawn to ready) and another colour while active, a dotted line while it waited for
//! its dependencies, a dashed one while it waited out a restart backoff; a red cross at
//! each failure and an orange triangle at each restart. As the machine's init, the
//! kernel's share of the boot (the uptime when ember started) comes first, on an axis
//! broken when it would crowd out the services. A grey elbow arrow joins each service
//! to the dependency it waited for last (what `critical-chain` follows); hovering a row
//! shows all of its dependencies and times.
//!
//! Times on the axis are since ember started, as in `blame` and `critical-chain`.

use super::span;
use ember_ipc::{ServiceTimeline, State, Sub, Timeline};
use std::fmt::Write;

const WIDTH: f64 = 1200.0;
const ROW: f64 = 22.0;
const BAR: f64 = 14.0;
const TOP: f64 = 86.0;
const RIGHT_MARGIN: f64 = 40.0;
const TOOK_COLUMN: f64 = 64.0;
/// The share of the plot the kernel may take before its part of the axis is broken.
const KERNEL_SHARE: f64 = 0.18;

const ACTIVATING: &str = "#f2b33d";
const ACTIVE: &str = "#4caf6e";
const DEACTIVATING: &str = "#9aa5b1";
const KERNEL: &str = "#6b7a90";
const STARTUP: &str = "#c3cbd8";
const FAILURE: &str = "#d7263d";
const RESTART: &str = "#f07f13";
const WAITING: &str = "#9aa5b1";
const ARROW: &str = "#7d8799";

/// What a stretch of a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Wanted, but waiting for what it is ordered after.
    Waiting,
    /// Spawned, not ready yet.
    Activating,
    Active,
    /// A oneshot that finished: active (exited).
    Exited,
    Deactivating,
    /// Failed, waiting out the restart delay.
    Backoff,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Waiting => "waiting",
            Kind::Activating => "activating",
            Kind::Active => "active",
            Kind::Exited => "exited",
            Kind::Deactivating => "deactivating",
            Kind::Backoff => "backoff",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub kind: Kind,
    pub from: u64,
    pub to: u64,
    /// Still in this state when the timeline was taken.
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Failure { at: u64, why: String },
    Restart { at: u64, run: u64 },
}

fn kind_of(state: State, sub: Sub) -> Option<Kind> {
    match (state, sub) {
        (State::Inactive, Sub::Waiting | Sub::Dependency) => Some(Kind::Waiting),
        (State::Activating, Sub::AutoRestart) => Some(Kind::Backoff),
        (State::Activating, _) => Some(Kind::Activating),
        (State::Active, Sub::Exited) => Some(Kind::Exited),
        (State::Active, _) => Some(Kind::Active),
        (State::Deactivating, _) => Some(Kind::Deactivating),
        _ => None,
    }
}

/// A service's row: its stretches and marks, from its transitions; `end` closes the
/// last one.
pub fn row(service: &ServiceTimeline, end: u64) -> (Vec<Segment>, Vec<Mark>) {
    let mut segments = Vec::new();
    let mut marks = Vec::new();
    let transitions = &service.transitions;
    // The oldest transitions were dropped: the first activation is still known.
    if service.dropped > 0 {
        if let (Some(from), Some(to)) = (service.first_spawn_usec, service.first_active_usec) {
            if transitions.first().is_none_or(|t| to <= t.at_usec) {
                segments.push(Segment {
                    kind: Kind::Activating,
                    from,
                    to,
                    open: false,
                });
            }
        }
    }
    for (i, t) in transitions.iter().enumerate() {
        let next = transitions.get(i + 1);
        if let Some(kind) = kind_of(t.state, t.sub_state) {
            segments.push(Segment {
                kind,
                from: t.at_usec,
                to: next.map(|n| n.at_usec).unwrap_or(end).max(t.at_usec),
                open: next.is_none(),
            });
        }
        if t.state == State::Failed || t.sub_state == Sub::AutoRestart {
            marks.push(Mark::Failure {
                at: t.at_usec,
                why: t.reason.clone().unwrap_or_else(|| t.sub_state.to_string()),
            });
        }
        if t.state == State::Activating && t.sub_state == Sub::Start && t.run > 1 {
            marks.push(Mark::Restart {
                at: t.at_usec,
                run: t.run,
            });
        }
    }
    (segments, marks)
}

/// The end of the axis: the last thing recorded (running bars stop there, open-ended).
fn last_event(timeline: &Timeline) -> u64 {
    timeline
        .services
        .iter()
        .flat_map(|s| {
            s.transitions
                .iter()
                .map(|t| t.at_usec)
                .chain(s.first_active_usec)
        })
        .chain(timeline.boot_complete_usec)
        .max()
        .unwrap_or(0)
}

/// Rows in the order the services were first spawned; never-spawned ones last, by name.
pub fn order(timeline: &Timeline) -> Vec<&ServiceTimeline> {
    let mut services: Vec<&ServiceTimeline> = timeline.services.iter().collect();
    services.sort_unstable_by(|a, b| {
        let key = |s: &ServiceTimeline| (s.first_spawn_usec.is_none(), s.first_spawn_usec);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    services
}

/// XML's five special characters, escaped for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all: a parser refuses the whole document.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A tick step of 1, 2 or 5 times a power of ten, for about `count` ticks over `range`.
fn tick_step(range: u64, count: u64) -> u64 {
    let raw = (range / count.max(1)).max(1);
    let mut power = 1u64;
    while power.saturating_mul(10) <= raw {
        power *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(power * 10)
}

/// At most `max` characters of a name, with "…" when cut.
fn fit(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    let mut cut: String = name.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The whole SVG document.
pub fn svg(timeline: &Timeline) -> String {
    let rows = order(timeline);
    // A little room after the last event, where running bars end open.
    let last = last_event(timeline).max(1_000);
    let end = last + last / 25;
    let kernel = match (timeline.role, timeline.uptime_at_start_usec) {
        (ember_ipc::Role::Machine, Some(uptime)) => Some(uptime),
        _ => None,
    };
    let longest = rows
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(6);
    let label_chars = longest.clamp(6, 34);
    let label_width = (label_chars as f64 * 7.2 + 24.0).max(112.0);
    // Then a column with how long each took to start.
    let x0 = label_width + TOOK_COLUMN;
    let x1 = WIDTH - RIGHT_MARGIN;
    let plot_width = x1 - x0;
    // The kernel's stretch on the left; ember's start at `xe`.
    let (xe, broken) = match kernel {
        None => (x0, false),
        Some(k) => {
            let share = k as f64 / (k + end) as f64;
            if share <= KERNEL_SHARE {
                (x0 + plot_width * share, false)
            } else {
                (x0 + plot_width * KERNEL_SHARE, true)
            }
        }
    };
    let scale = (x1 - xe) / end as f64;
    let x = |t: u64| xe + t as f64 * scale;
    // The first row is the system's: the kernel, then ember's own start-up.
    let rows_top = TOP + ROW;
    let rows_bottom = rows_top + rows.len() as f64 * ROW;
    let height = rows_bottom + 64.0;
    let row_y = |i: usize| rows_top + i as f64 * ROW;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<title>{title}</title>
<defs>
<marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{ARROW}"/></marker>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="{ACTIVATING}"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d99a20" stroke-width="2"/></pattern>
</defs>
<rect width="100%" height="100%" fill="#ffffff"/>"##,
        title = escape(&format!("ember boot of {}", timeline.device)),
    );
    // Header: what, when, how it went.
    let started = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(timeline.started_usec),
    );
    let failed = timeline
        .services
        .iter()
        .filter(|s| {
            s.transitions
                .last()
                .is_some_and(|t| t.state == State::Failed)
        })
        .count();
    let complete = match timeline.boot_complete_usec {
        Some(t) => format!("every service settled @{}", span(t)),
        None => "still starting".to_owned(),
    };
    let handover = match (kernel, timeline.uptime_at_start_usec) {
        (Some(k), _) => format!("kernel handed over at uptime {}", span(k)),
        (None, Some(u)) => format!(
            "ember started at uptime {} as {} (no kernel handover)",
            span(u),
            timeline.role
        ),
        (None, None) => format!("ember ran as {}", timeline.role),
    };
    let _ = writeln!(
        w,
        r##"<text x="16" y="28" font-size="18" font-weight="bold" fill="#1d2330">ember boot of {device}</text>
<text x="16" y="48" fill="#4a5568">started {started} · {handover} · {complete} · {n} services, {failed} failed</text>"##,
        device = escape(&timeline.device),
        n = timeline.services.len(),
    );
    // Every other row shaded, under the grid.
    for i in (1..rows.len()).step_by(2) {
        let _ = writeln!(
            w,
            r##"<rect x="0" y="{y:.1}" width="{WIDTH}" height="{ROW}" fill="#f4f6fa"/>"##,
            y = row_y(i)
        );
    }
    // Time axis: grid lines and labels since ember started.
    let step = tick_step(end, 10);
    let mut tick = 0;
    while tick <= end {
        let tx = x(tick);
        let _ = writeln!(
            w,
            r##"<line x1="{tx:.1}" y1="{y1}" x2="{tx:.1}" y2="{rows_bottom:.1}" stroke="#e3e7ee"/><text x="{tx:.1}" y="{ty}" text-anchor="middle" fill="#4a5568" font-size="11">{label}</text>"##,
            y1 = TOP - 8.0,
            ty = TOP - 12.0,
            label = if tick == 0 {
                "0".to_owned()
            } else {
                span(tick)
            },
        );
        tick += step;
    }
    let _ = writeln!(
        w,
        r##"<text x="{x1}" y="{ay}" text-anchor="end" fill="#4a5568" font-size="11">time since ember started</text><text x="{lx:.1}" y="{y}" text-anchor="end" fill="#4a5568" font-size="11" font-weight="bold">service</text><text x="{tx:.1}" y="{y}" text-anchor="end" fill="#4a5568" font-size="11" font-weight="bold">took</text>"##,
        ay = TOP - 26.0,
        lx = label_width - 8.0,
        tx = x0 - 10.0,
        y = TOP - 12.0,
    );
    // The system's row: the kernel's share, then ember's own start-up until its first spawn.
    let y = TOP + (ROW - BAR) / 2.0;
    let ty = y + BAR - 3.0;
    let _ = write!(
        w,
        r##"<g class="system"><text x="{lx:.1}" y="{ty:.1}" text-anchor="end" fill="#1d2330" font-style="italic">{label}</text>"##,
        lx = label_width - 8.0,
        label = if kernel.is_some() {
            "kernel, ember"
        } else {
            "ember"
        },
    );
    if let Some(k) = kernel {
        let _ = write!(
            w,
            r##"<g class="kernel"><title>{title}</title><rect x="{x0:.1}" y="{y:.1}" width="{kw:.1}" height="{BAR}" fill="{KERNEL}" rx="2"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" fill="#ffffff" font-size="11">kernel {label}</text>"##,
            title = escape(&format!(
                "the kernel (and what it counts before it) ran {} before it started ember",
                span(k)
            )),
            kw = (xe - x0 - 2.0).max(1.0),
            tx = (x0 + xe) / 2.0,
            label = escape(&span(k)),
        );
        if broken {
            // A break in the axis: the kernel's stretch is not to scale.
            let bx = x0 + (xe - x0) * 0.85;
            let _ = write!(
                w,
                r##"<path d="M{a:.1},{t:.1} l6,{h:.1} M{b:.1},{t:.1} l6,{h:.1}" stroke="#ffffff" stroke-width="3"/>"##,
                a = bx - 4.0,
                b = bx + 2.0,
                t = y - 2.0,
                h = BAR + 4.0,
            );
        }
        let _ = write!(w, "</g>");
    }
    let first_spawn = timeline
        .services
        .iter()
        .filter_map(|s| s.first_spawn_usec)
        .min();
    if let Some(first) = first_spawn.filter(|f| *f > 0) {
        let width = (x(first) - xe).max(1.5);
        let label = span(first);
        let _ = write!(
            w,
            r##"<g class="startup"><title>{title}</title><rect x="{xe:.1}" y="{y:.1}" width="{width:.1}" height="{BAR}" fill="{STARTUP}" rx="2"/>"##,
            title = escape(&format!(
                "ember's own start-up until its first spawn: {}",
                span(first)
            )),
        );
        if width > label.len() as f64 * 6.5 + 8.0 {
            let _ = write!(
                w,
                r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" fill="#1d2330" font-size="11">{label}</text>"##,
                tx = xe + width / 2.0,
            );
        }
        let _ = write!(w, "</g>");
    }
    let _ = writeln!(w, "</g>");
    // Services.
    let index: std::collections::HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for (i, service) in rows.iter().enumerate() {
        let y = row_y(i);
        let bar_y = y + (ROW - BAR) / 2.0;
        let text_y = bar_y + BAR - 3.0;
        let (segments, marks) = row(service, end);
        let _ = write!(
            w,
            r##"<g class="service" data-service="{name}"><title>{tooltip}</title><text x="{lx:.1}" y="{text_y:.1}" text-anchor="end" fill="#1d2330">{label}</text>"##,
            name = escape(&service.name),
            tooltip = escape(&tooltip(service)),
            lx = label_width - 8.0,
            label = escape(&fit(&service.name, label_chars)),
        );
        for s in &segments {
            let (sx, ex) = (x(s.from), x(s.to));
            let width = (ex - sx).max(1.5);
            let class = s.kind.class();
            let mid = bar_y + BAR / 2.0;
            let _ = match s.kind {
                Kind::Activating => write!(
                    w,
                    r##"<rect class="{class}" x="{sx:.1}" y="{bar_y:.1}" width="{width:.1}" height="{BAR}" fill="url(#hatch)" rx="2"/>"##
                ),
                Kind::Active => write!(
                    w,
                    r##"<rect class="{class}" x="{sx:.1}" y="{bar_y:.1}" width="{width:.1}" height="{BAR}" fill="{ACTIVE}" rx="2"/>"##
                ),
                Kind::Deactivating => write!(
                    w,
                    r##"<rect class="{class}" x="{sx:.1}" y="{bar_y:.1}" width="{width:.1}" height="{BAR}" fill="{DEACTIVATING}" rx="2"/>"##
                ),
                Kind::Exited => write!(
                    w,
                    r##"<rect class="{class}" x="{sx:.1}" y="{y:.1}" width="{width:.1}" height="4" fill="{ACTIVE}" opacity="0.45"/>"##,
                    y = mid - 2.0
                ),
                Kind::Waiting => write!(
                    w,
                    r##"<line class="{class}" x1="{sx:.1}" y1="{mid:.1}" x2="{ex:.1}" y2="{mid:.1}" stroke="{WAITING}" stroke-width="1.5" stroke-dasharray="1,3"/>"##
                ),
                Kind::Backoff => write!(
                    w,
                    r##"<line class="{class}" x1="{sx:.1}" y1="{mid:.1}" x2="{ex:.1}" y2="{mid:.1}" stroke="{FAILURE}" stroke-width="1.5" stroke-dasharray="4,3"/>"##
                ),
            };
            if s.open && matches!(s.kind, Kind::Active | Kind::Activating) {
                // Still going when the timeline was taken.
                let _ = write!(
                    w,
                    r##"<path d="M{ax:.1},{top:.1} l5,{half:.1} l-5,{half:.1} z" fill="{fill}"/>"##,
                    ax = ex,
                    top = bar_y,
                    half = BAR / 2.0,
                    fill = if s.kind == Kind::Active {
                        ACTIVE
                    } else {
                        ACTIVATING
                    },
                );
            }
        }
        // How long its first start took, in its own column.
        if let Some(took) = super::startup(service).filter(|t| *t > 0) {
            let _ = write!(
                w,
                r##"<text class="took" x="{tx:.1}" y="{text_y:.1}" text-anchor="end" fill="#4a5568" font-size="11">+{label}</text>"##,
                tx = x0 - 10.0,
                label = span(took),
            );
        }
        if service.first_spawn_usec.is_none() {
            let _ = write!(
                w,
                r##"<text class="note" x="{tx:.1}" y="{text_y:.1}" fill="#6b7280" font-style="italic">{note}</text>"##,
                tx = xe + 4.0,
                note = escape(&super::last_state(service)),
            );
        }
        for mark in &marks {
            match mark {
                Mark::Failure { at, why } => {
                    let (cx, cy) = (x(*at), bar_y + BAR / 2.0);
                    let _ = write!(
                        w,
                        r##"<g class="failure"><title>{why}</title><path d="M{a:.1},{b:.1} l8,8 M{a:.1},{c:.1} l8,-8" stroke="{FAILURE}" stroke-width="2.5" stroke-linecap="round"/></g>"##,
                        why = escape(&format!("failed @{}: {why}", span(*at))),
                        a = cx - 4.0,
                        b = cy - 4.0,
                        c = cy + 4.0,
                    );
                }
                Mark::Restart { at, run } => {
                    let _ = write!(
                        w,
                        r##"<g class="restart"><title>{title}</title><path d="M{a:.1},{top:.1} l5,-7 l-10,0 z" fill="{RESTART}"/></g>"##,
                        title = escape(&format!("spawned again @{} (run {run})", span(*at))),
                        a = x(*at),
                        top = bar_y + 1.0,
                    );
                }
            }
        }
        let _ = writeln!(w, "</g>");
        // The dependency it waited for last: an elbow from where that one became active.
        if let (Some(dep), Some(spawn)) = (
            super::chain::decider(timeline, service),
            service.first_spawn_usec,
        ) {
            if let (Some(&j), Some(active)) = (index.get(dep.name.as_str()), dep.first_active_usec)
            {
                let (ax, sx) = (x(active), x(spawn));
                let from_y = if j < i {
                    row_y(j) + (ROW + BAR) / 2.0
                } else {
                    row_y(j) + (ROW - BAR) / 2.0
                };
                let to_y = y + ROW / 2.0;
                let path = if sx - ax > 6.0 {
                    format!("M{ax:.1},{from_y:.1} V{to_y:.1} H{:.1}", sx - 1.0)
                } else {
                    format!("M{ax:.1},{from_y:.1} V{:.1}", bar_y - 1.0)
                };
                let _ = writeln!(
                    w,
                    r##"<path class="dependency" d="{path}" fill="none" stroke="{ARROW}" stroke-width="1" marker-end="url(#arrow)"><title>{title}</title></path>"##,
                    title = escape(&format!(
                        "{} waited for {} (active @{})",
                        service.name,
                        dep.name,
                        span(active)
                    )),
                );
            }
        }
    }
    if let Some(done) = timeline.boot_complete_usec {
        let bx = x(done);
        let _ = writeln!(
            w,
            r##"<line class="boot-complete" x1="{bx:.1}" y1="{y1:.1}" x2="{bx:.1}" y2="{rows_bottom:.1}" stroke="#1d2330" stroke-width="1" stroke-dasharray="5,4"/><text x="{tx:.1}" y="{ty:.1}" fill="#1d2330" font-size="11" text-anchor="{anchor}">all settled @{label}</text>"##,
            y1 = TOP - 4.0,
            tx = bx + if bx > x1 - 80.0 { -4.0 } else { 4.0 },
            ty = rows_bottom + 14.0,
            anchor = if bx > x1 - 80.0 { "end" } else { "start" },
            label = span(done),
        );
    }
    legend(w, rows_bottom + 40.0);
    let _ = writeln!(w, "</svg>");
    out
}

fn legend(w: &mut String, y: f64) {
    let items: [(&str, &str); 9] = [
        (
            "ember start-up",
            r##"<rect width="22" height="12" fill="#c3cbd8" rx="2"/>"##,
        ),
        (
            "activating",
            r##"<rect width="22" height="12" fill="url(#hatch)" rx="2"/>"##,
        ),
        (
            "active",
            r##"<rect width="22" height="12" fill="#4caf6e" rx="2"/>"##,
        ),
        (
            "stopping",
            r##"<rect width="22" height="12" fill="#9aa5b1" rx="2"/>"##,
        ),
        (
            "done (oneshot)",
            r##"<rect y="4" width="22" height="4" fill="#4caf6e" opacity="0.45"/>"##,
        ),
        (
            "waiting",
            r##"<line x1="0" y1="6" x2="22" y2="6" stroke="#9aa5b1" stroke-width="1.5" stroke-dasharray="1,3"/>"##,
        ),
        (
            "restart delay",
            r##"<line x1="0" y1="6" x2="22" y2="6" stroke="#d7263d" stroke-width="1.5" stroke-dasharray="4,3"/>"##,
        ),
        (
            "failure",
            r##"<path d="M7,2 l8,8 M7,10 l8,-8" stroke="#d7263d" stroke-width="2.5" stroke-linecap="round"/>"##,
        ),
        (
            "restart",
            r##"<path d="M11,10 l5,-7 l-10,0 z" fill="#f07f13"/>"##,
        ),
    ];
    let mut x = 16.0;
    let _ = write!(w, r##"<g class="legend" font-size="11" fill="#1d2330">"##);
    for (label, swatch) in items {
        let _ = write!(
            w,
            r##"<g transform="translate({x:.1},{y:.1})">{swatch}<text x="28" y="10">{label}</text></g>"##,
            y = y - 10.0,
        );
        x += 40.0 + label.len() as f64 * 6.6;
    }
    let _ = write!(
        w,
        r##"<g transform="translate({x:.1},{y:.1})"><path d="M0,2 V8 H20" fill="none" stroke="{ARROW}" marker-end="url(#arrow)"/><text x="28" y="10">waited for</text></g>"##,
        y = y - 10.0,
    );
    let _ = writeln!(w, "</g>");
}

/// What hovering a row shows.
fn tooltip(service: &ServiceTimeline) -> String {
    let mut text = format!(
        "{} ({}, ready: {})",
        service.name, service.kind, service.ready
    );
    for (word, list) in [
        ("requires", &service.requires),
        ("wants", &service.wants),
        ("after", &service.after),
    ] {
        if !list.is_empty() {
            let _ = write!(text, "\n{word} {}", list.join(", "));
        }
    }
    match (service.first_spawn_usec, service.first_active_usec) {
        (Some(s), Some(a)) => {
            let _ = write!(
                text,
                "\nspawned @{}, active @{} (+{})",
                span(s),
                span(a),
                span(a.saturating_sub(s))
            );
        }
        (Some(s), None) => {
            let _ = write!(text, "\nspawned @{}, never active", span(s));
        }
        _ => {}
    }
    let _ = write!(
        text,
        "\n{} runs, {} failures; now {}",
        service.spawns,
        service.failures,
        super::last_state(service)
    );
    if service.dropped > 0 {
        let _ = write!(text, "\n({} older transitions not kept)", service.dropped);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::testing::{service, simple, timeline};
    use super::*;

    /// Every tag closed in order, every attribute quoted: enough to catch a slip in the
    /// hand-written markup here (the integration test parses it with a real XML parser).
    fn balanced(svg: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').ok_or("unclosed <")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or_default();
                stack.push(name.to_owned());
            }
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("odd quotes in <{tag}>"));
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    fn boot() -> Timeline {
        let mut t = timeline(vec![
            simple("web", &["db"], 500, 700),
            simple("db", &[], 2, 500),
            service(
                "flaky<&>\"'",
                &[],
                &[
                    (1, "activating", "start", 1),
                    (3, "activating", "auto-restart", 1),
                    (103, "activating", "start", 2),
                    (105, "failed", "start-limit", 2),
                ],
            ),
            service("off", &[], &[]),
        ]);
        t.boot_complete_usec = Some(700_000);
        t
    }

    #[test]
    fn rows_follow_the_first_spawns_and_names_are_escaped() {
        let svg = svg(&boot());
        balanced(&svg).unwrap();
        let order: Vec<&str> = svg
            .split("data-service=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert_eq!(
            order,
            ["flaky&lt;&amp;&gt;&quot;&apos;", "db", "web", "off"]
        );
        assert!(!svg.contains("flaky<"));
        assert!(
            svg.contains("class=\"kernel\""),
            "a machine's boot shows the kernel"
        );
        assert!(
            svg.contains("until its first spawn: 1.00ms"),
            "ember start-up"
        );
        assert_eq!(svg.matches("class=\"failure\"").count(), 2);
        assert_eq!(svg.matches("class=\"restart\"").count(), 1);
        // web waited for db.
        assert!(svg.contains("web waited for db (active @500ms)"));
        assert!(svg.contains("all settled @700ms"));
    }

    #[test]
    fn text_xml_cannot_hold_is_replaced() {
        // A timeline read with --from FILE comes from elsewhere: its device, names and
        // reasons may hold anything, and one U+FFFE made the whole document unreadable.
        assert_eq!(
            escape("a\u{1b}b\u{fffe}c\u{ffff}d\u{9b}<"),
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{9b}&lt;"
        );
    }

    #[test]
    fn rows_from_transitions() {
        let s = service(
            "db",
            &[],
            &[
                (0, "inactive", "waiting", 0),
                (10, "activating", "start", 1),
                (20, "activating", "auto-restart", 1),
                (120, "activating", "start", 2),
                (150, "active", "running", 2),
            ],
        );
        let (segments, marks) = row(&s, 400_000);
        let kinds: Vec<(Kind, u64, u64, bool)> = segments
            .iter()
            .map(|s| (s.kind, s.from / 1000, s.to / 1000, s.open))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Waiting, 0, 10, false),
                (Kind::Activating, 10, 20, false),
                (Kind::Backoff, 20, 120, false),
                (Kind::Activating, 120, 150, false),
                (Kind::Active, 150, 400, true),
            ]
        );
        assert_eq!(
            marks,
            [
                Mark::Failure {
                    at: 20_000,
                    why: "exited with code 1".into()
                },
                Mark::Restart {
                    at: 120_000,
                    run: 2
                }
            ]
        );
    }

    #[test]
    fn no_kernel_outside_the_machine_and_an_empty_timeline_still_draws() {
        let mut t = boot();
        t.role = ember_ipc::Role::Supervisor;
        let svg = svg(&t);
        balanced(&svg).unwrap();
        assert!(!svg.contains("class=\"kernel\""));
        assert!(svg.contains("as supervisor (no kernel handover)"));
        let empty = timeline(vec![]);
        balanced(&super::svg(&empty)).unwrap();
    }

    #[test]
    fn the_first_activation_is_drawn_when_older_transitions_were_dropped() {
        let mut s = service(
            "busy",
            &[],
            &[
                (900, "deactivating", "stop-sigterm", 40),
                (901, "inactive", "dead", 40),
                (902, "activating", "start", 41),
                (903, "active", "running", 41),
            ],
        );
        s.dropped = 150;
        s.first_spawn_usec = Some(10_000);
        s.first_active_usec = Some(60_000);
        let (segments, marks) = row(&s, 1_000_000);
        assert_eq!(
            segments[0],
            Segment {
                kind: Kind::Activating,
                from: 10_000,
                to: 60_000,
                open: false
            }
        );
        assert_eq!(segments.len(), 4, "{segments:?}");
        assert_eq!(
            marks,
            [Mark::Restart {
                at: 902_000,
                run: 41
            }]
        );
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(700_000, 10), 100_000);
        assert_eq!(tick_step(1_450_000, 10), 200_000);
        assert_eq!(tick_step(30_000, 10), 5_000);
        assert_eq!(tick_step(0, 10), 1);
    }
}
