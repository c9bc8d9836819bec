#!/bin/sh
# Printed by the demo's "welcome" oneshot once web is up.
cat <<'TEXT'

  ember demo is up. In another terminal, try:

    alias ectl='target/release/ember ctl --config config/demo/ember.toml'
    ectl status                    # db and web active, migrate/welcome exited, flaky failed
    ectl logs web -f               # follow web's output (Ctrl-C to stop following)
    ectl restart db --wait         # web goes down with db and comes back after it
    ectl start flaky               # crash-loops to its start limit again:
    ectl status flaky              #   failed (start-limit), with the reason
    ectl stop web && ectl status   # web inactive, want down
    ectl status --json             # what scripts read
    kill -HUP <ember pid>          # or `ectl reload` after editing config/demo/

  and over MQTT (with mosquitto-clients):

    mosquitto_sub -p 18830 -t 'ember/+/service/+/state' -v
    mosquitto_pub -p 18830 -t ember/demo-board/service/web/cmd -m restart
    mosquitto_sub -p 18830 -t ember/demo-board/reply

  Ctrl-C here stops every service in reverse dependency order.

TEXT
