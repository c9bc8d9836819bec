//! `ember-fleet`: what `ember fleet ...` runs (see `ember fleet --help`).

use ember_fleet::command::{self, Request};
use ember_fleet::fleet::Fleet;
use ember_fleet::options::{self, Action, Options, Parsed};
use ember_fleet::session::Session;
use ember_fleet::view::{self, Selection};
use ember_fleet::watch::{self, Watch};
use std::io::IsTerminal;
use std::time::Duration;

/// How long the retained states may take when --timeout does not say.
const SNAPSHOT: Duration = Duration::from_secs(5);
/// How long start, stop and restart wait for answers when --timeout does not say.
const ANSWERS: Duration = Duration::from_secs(30);

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let options = match options::parse(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{}", options::HELP);
            return 0;
        }
        Ok(Parsed::Version) => {
            println!("ember fleet {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            eprintln!("ember fleet: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ember fleet: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(fleet(*options))
}

async fn fleet(options: Options) -> i32 {
    let selection = Selection {
        group: options.group.clone(),
        device: options.device.clone(),
        service: options.service.clone(),
    };
    let prefix = &options.prefix;
    let mut filters = vec![
        format!("{prefix}/+/status"),
        format!("{prefix}/+/system"),
        format!("{prefix}/+/service/+/state"),
    ];
    if matches!(options.action, Action::Command { .. }) {
        filters.push(format!("{prefix}/+/reply"));
    }
    let window = match options.action {
        Action::Status => options.timeout.unwrap_or(SNAPSHOT),
        _ => options.timeout.unwrap_or(SNAPSHOT).min(SNAPSHOT),
    };
    let mut session = match Session::open(
        &options.broker,
        &options.client_id,
        filters,
        window.max(Duration::from_secs(5)),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                    "ember fleet: cannot use the broker at {}: {e}; check --broker and the login options",
                    options.url
                );
            return 2;
        }
    };
    let mut fleet = Fleet::new(prefix);
    let snapshot = view::snapshot(&mut session, &mut fleet, window).await;
    let code = match &options.action {
        Action::Status => {
            if options.json {
                println!(
                    "{}",
                    view::json(&fleet, &selection, &options.url, &snapshot)
                );
            } else {
                print!(
                    "{}",
                    view::text(&fleet, &selection, &options.url, &snapshot)
                );
            }
            0
        }
        Action::Command { verb, service } => {
            let request = Request {
                verb,
                service,
                prefix,
                selection: &selection,
                wait: options.wait,
                signal: options.signal.as_deref(),
                timeout: options.timeout.unwrap_or(ANSWERS),
                client_id: &options.client_id,
            };
            let known = view::selected(&fleet, &selection).count();
            if known == 0 {
                for note in &snapshot.notes {
                    eprintln!("ember fleet: note: {note}");
                }
                eprintln!(
                    "ember fleet: no board the broker knows of is selected ({}; {} board(s) known); \
                     nothing sent. `ember fleet status` lists the boards and their groups",
                    selection.describe(),
                    fleet.boards.len()
                );
                session.close().await;
                return 5;
            }
            for note in &snapshot.notes {
                eprintln!("ember fleet: note: {note}");
            }
            match command::run(&mut session, &mut fleet, &request).await {
                Ok(report) => {
                    if options.json {
                        println!("{}", command::json(&request, &report));
                    } else {
                        print!("{}", command::text(&request, &report));
                    }
                    command::exit_code(report.outcomes.values())
                }
                Err(e) => {
                    eprintln!("ember fleet: {e}");
                    2
                }
            }
        }
        Action::Watch => {
            let table = !options.json && !options.lines && std::io::stdout().is_terminal();
            let watch = Watch {
                selection: &selection,
                json: options.json,
                table,
                url: &options.url,
                timeout: options.timeout,
            };
            watch::run(&mut session, &mut fleet, &watch, snapshot).await
        }
    };
    session.close().await;
    code
}
