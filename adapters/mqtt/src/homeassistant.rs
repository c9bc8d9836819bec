//! Home Assistant MQTT discovery: each allowed service becomes a `switch` (on = start,
//! off = stop, state from its state topic) and a restart `button`, both available while
//! the device's status topic says `online`.

use crate::topics::Topics;
use serde_json::json;

/// Discovery object ids allow [a-zA-Z0-9_-] only.
fn object_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The (topic, retained payload) pairs announcing one service.
pub fn announce(topics: &Topics, service: &str) -> Vec<(String, Vec<u8>)> {
    let device = topics.device();
    let node = object_id(&format!("ember_{device}"));
    let object = object_id(service);
    let device_block = json!({
        "identifiers": [node],
        "name": device,
        "manufacturer": "ember",
        "model": "ember init",
    });
    let availability = json!({
        "topic": topics.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
    });
    let switch = json!({
        "name": service,
        "unique_id": format!("{node}_{object}"),
        "object_id": format!("{node}_{object}"),
        "command_topic": topics.service_cmd(service),
        "payload_on": "start",
        "payload_off": "stop",
        "state_topic": topics.state(service),
        "value_template": "{{ 'ON' if value_json.want == 'up' else 'OFF' }}",
        "state_on": "ON",
        "state_off": "OFF",
        "json_attributes_topic": topics.state(service),
        "availability": [availability],
        "device": device_block,
    });
    let button = json!({
        "name": format!("{service} restart"),
        "unique_id": format!("{node}_{object}_restart"),
        "object_id": format!("{node}_{object}_restart"),
        "command_topic": topics.service_cmd(service),
        "payload_press": "restart",
        "availability": [availability],
        "device": device_block,
    });
    vec![
        (
            format!("homeassistant/switch/{node}/{object}/config"),
            serde_json::to_vec(&switch).unwrap_or_default(),
        ),
        (
            format!("homeassistant/button/{node}/{object}_restart/config"),
            serde_json::to_vec(&button).unwrap_or_default(),
        ),
    ]
}

/// Empty retained payloads remove a service's entities (after a reload removed it).
pub fn retract(topics: &Topics, service: &str) -> Vec<(String, Vec<u8>)> {
    let node = object_id(&format!("ember_{}", topics.device()));
    let object = object_id(service);
    vec![
        (
            format!("homeassistant/switch/{node}/{object}/config"),
            Vec::new(),
        ),
        (
            format!("homeassistant/button/{node}/{object}_restart/config"),
            Vec::new(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_a_switch_and_a_button() {
        let topics = Topics::new("ember", "board.1", &[]);
        let pairs = announce(&topics, "web@2");
        assert_eq!(
            pairs[0].0,
            "homeassistant/switch/ember_board_1/web_2/config"
        );
        let switch: serde_json::Value = serde_json::from_slice(&pairs[0].1).unwrap();
        assert_eq!(switch["command_topic"], "ember/board.1/service/web@2/cmd");
        assert_eq!(switch["payload_on"], "start");
        assert_eq!(switch["availability"][0]["topic"], "ember/board.1/status");
        let button: serde_json::Value = serde_json::from_slice(&pairs[1].1).unwrap();
        assert_eq!(button["payload_press"], "restart");
        assert_eq!(retract(&topics, "web@2")[1].1, Vec::<u8>::new());
    }
}
