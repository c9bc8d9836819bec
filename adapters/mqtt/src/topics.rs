//! MQTT topic names, in one place: what ember publishes and what it answers to.
//!
//! ```text
//! <prefix>/<device>/status                         online | offline (retained; the will)
//! <prefix>/<device>/system                         JSON: state, config, seq, groups (retained)
//! <prefix>/<device>/service/<name>/state           JSON status (retained)
//! <prefix>/<device>/service/<name>/cmd             start | stop | restart
//! <prefix>/<device>/cmd                            list | reload | poweroff | reboot
//! <prefix>/<device>/reply                          replies to commands
//! <prefix>/group/<group>/service/<name>/cmd        the same, for a whole fleet
//! <prefix>/group/<group>/cmd
//! ```

/// Where a command arrived: for one service, or for the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Service(String),
    System,
    /// Home Assistant said it (re)started: discovery must be republished.
    HomeAssistantStatus,
}

#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    device: String,
    groups: Vec<String>,
}

pub const HOMEASSISTANT_STATUS: &str = "homeassistant/status";

impl Topics {
    pub fn new(prefix: &str, device: &str, groups: &[String]) -> Topics {
        Topics {
            prefix: prefix.to_owned(),
            device: device.to_owned(),
            groups: groups.to_vec(),
        }
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn status(&self) -> String {
        format!("{}/{}/status", self.prefix, self.device)
    }

    /// Retained: the board's state, whether its configuration fell back, its groups.
    pub fn system(&self) -> String {
        format!("{}/{}/system", self.prefix, self.device)
    }

    pub fn state(&self, service: &str) -> String {
        format!("{}/{}/service/{service}/state", self.prefix, self.device)
    }

    /// Every service's state topic on this device: subscribed to after each connect, to
    /// find retained states of services ember no longer has.
    pub fn states_filter(&self) -> String {
        format!("{}/{}/service/+/state", self.prefix, self.device)
    }

    /// The service a state topic of this device's is of, if it is one.
    pub fn state_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix('/')?
            .strip_prefix(&self.device)?
            .strip_prefix("/service/")?;
        let name = rest.strip_suffix("/state")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }

    /// Not retained: a figure of the moment, every `[system] metrics_interval`.
    pub fn metrics(&self, service: &str) -> String {
        format!("{}/{}/service/{service}/metrics", self.prefix, self.device)
    }

    pub fn service_cmd(&self, service: &str) -> String {
        format!("{}/{}/service/{service}/cmd", self.prefix, self.device)
    }

    pub fn reply(&self) -> String {
        format!("{}/{}/reply", self.prefix, self.device)
    }

    /// What to subscribe to after every CONNACK (brokers forget subscriptions of a clean
    /// session, and rumqttc does not restore them).
    pub fn subscriptions(&self, homeassistant: bool) -> Vec<String> {
        let mut topics = vec![
            format!("{}/{}/service/+/cmd", self.prefix, self.device),
            format!("{}/{}/cmd", self.prefix, self.device),
        ];
        for group in &self.groups {
            topics.push(format!("{}/group/{group}/service/+/cmd", self.prefix));
            topics.push(format!("{}/group/{group}/cmd", self.prefix));
        }
        if homeassistant {
            topics.push(HOMEASSISTANT_STATUS.to_owned());
        }
        topics
    }

    /// What a received topic addresses, if it is one of ours.
    pub fn route(&self, topic: &str) -> Option<Target> {
        if topic == HOMEASSISTANT_STATUS {
            return Some(Target::HomeAssistantStatus);
        }
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let rest = match rest.strip_prefix("group/") {
            Some(grouped) => {
                let (group, rest) = grouped.split_once('/')?;
                if !self.groups.iter().any(|g| g == group) {
                    return None;
                }
                rest
            }
            None => rest.strip_prefix(&self.device)?.strip_prefix('/')?,
        };
        if rest == "cmd" {
            return Some(Target::System);
        }
        let name = rest.strip_prefix("service/")?.strip_suffix("/cmd")?;
        (!name.is_empty() && !name.contains('/')).then(|| Target::Service(name.to_owned()))
    }
}

/// A glob with `*` (any run of characters) and `?` (one character), for `allow`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        // A star first: a `*` in the text is matched by it, not as a literal.
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("ember", "board1", &["lab".into(), "eu".into()])
    }

    #[test]
    fn routes_commands() {
        let t = topics();
        assert_eq!(
            t.route("ember/board1/service/web/cmd"),
            Some(Target::Service("web".into()))
        );
        assert_eq!(t.route("ember/board1/cmd"), Some(Target::System));
        assert_eq!(
            t.route("ember/group/lab/service/web/cmd"),
            Some(Target::Service("web".into()))
        );
        assert_eq!(t.route("ember/group/eu/cmd"), Some(Target::System));
        assert_eq!(
            t.route("homeassistant/status"),
            Some(Target::HomeAssistantStatus)
        );
        assert_eq!(t.route("ember/group/us/cmd"), None, "not our group");
        assert_eq!(t.route("ember/board2/cmd"), None, "not our device");
        assert_eq!(t.route("ember/board1/service/web/state"), None);
        assert_eq!(t.route("ember/board1/service//cmd"), None);
        assert_eq!(t.route("ember/board1/service/a/b/cmd"), None);
        assert_eq!(t.route("emberx/board1/cmd"), None);
    }

    #[test]
    fn names_topics() {
        let t = topics();
        assert_eq!(t.state("web"), "ember/board1/service/web/state");
        assert_eq!(t.status(), "ember/board1/status");
        assert_eq!(t.reply(), "ember/board1/reply");
        assert_eq!(t.subscriptions(true).len(), 7);
        assert_eq!(t.states_filter(), "ember/board1/service/+/state");
        assert_eq!(
            t.state_of("ember/board1/service/web@2/state"),
            Some("web@2")
        );
        assert_eq!(t.state_of("ember/board2/service/web/state"), None);
        assert_eq!(t.state_of("ember/board1/service/web/cmd"), None);
        assert_eq!(t.state_of("ember/board1/service//state"), None);
        assert_eq!(t.state_of("ember/board1/service/a/b/state"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("web*", "web-1"));
        assert!(glob_match("*-db", "main-db"));
        assert!(glob_match("w?b", "web"));
        assert!(!glob_match("web", "web2"));
        assert!(!glob_match("db-*", "web"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("", "a"));
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/mqtt_command.rs): a `*` in the text was
    /// matched as a literal by the pattern's `*`, which then matched nothing more.
    #[test]
    fn a_star_in_the_text_is_matched_by_a_star() {
        assert!(glob_match("*", "*x"));
        assert!(glob_match("a*", "a*b"));
        assert!(glob_match("*b", "*ab"));
        assert!(glob_match("?*", "**"));
        assert!(!glob_match("*a", "*b"));
    }
}
