SUMMARY = "ember: an init system and service supervisor for embedded Linux"
DESCRIPTION = "ember is PID 1 and a service supervisor: it starts the services \
described in /etc/ember/ember.toml and /etc/ember/services.d in dependency order and \
in parallel, restarts them, reaps orphans, and shuts down in steps. Its MQTT and \
D-Bus adapters are executables of their own (packages ember-mqtt and ember-dbus) that \
ember runs as unprivileged services."
HOMEPAGE = "https://example.com/ember"
SECTION = "base"
# HOMEPAGE is a placeholder until ember has a public home.
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=281d068d77ab29f9820546655f247cb5 \
                    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# The source is the ember tree this layer lives in (yocto/meta-ember inside it), through
# the symlink files/ember-src -> the top of that tree. So the build uses exactly the
# Cargo.lock ember-crates.inc was generated from (CI checks both), with no SRCREV to keep
# in step. A copy of the layer used apart from that tree sets, in a bbappend:
#   EMBER_SRC = "git://example.com/ember.git;protocol=https;branch=main;destsuffix=ember-src"
#   SRCREV = "<the commit whose Cargo.lock ember-crates.inc was generated from>"
#
# The crates of the cargo workspace: every member of Cargo.toml's [workspace] must be
# here, itself or through a directory above it, the adapters too when PACKAGECONFIG
# leaves them out (cargo loads every member, even to build one package; yocto/check.sh
# compares this list with Cargo.toml's). adapters/ brings every crate under it: the
# adapters, and any other member placed there (such as a tool no package ships).
EMBER_CRATES_SRC = "file://ember-src/src \
                    file://ember-src/ipc \
                    file://ember-src/engine \
                    file://ember-src/adapters \
                    "
EMBER_SRC ?= "file://ember-src/Cargo.toml \
              file://ember-src/Cargo.lock \
              file://ember-src/LICENSE-MIT \
              file://ember-src/LICENSE-APACHE \
              ${EMBER_CRATES_SRC} \
              file://ember-src/config/dbus-1/io.ember.Init1.conf \
              "

inherit cargo cargo-update-recipe-crates update-alternatives
# useradd only when an adapter is built: it creates the adapters' users, and the class
# refuses a recipe that inherits it with no package to create users for. Deferred, so
# that a PACKAGECONFIG set after this line (a bbappend, local.conf) decides.
inherit_defer ${@'useradd' if d.getVar('EMBER_ADAPTER_PACKAGES').split() else ''}

require ${BPN}-crates.inc

SRC_URI += "${EMBER_SRC} \
            file://ember.toml \
            file://ember-mqtt.toml \
            file://ember-dbus.toml \
            file://dbus.toml \
            file://mounts.toml \
            file://loopback.toml \
            file://modules.toml \
            file://sysctl.toml \
            file://postinsts.toml \
            file://syslog.toml \
            "

S = "${UNPACKDIR}/ember-src"

# What is built, with cargo.bbclass passing PACKAGECONFIG_CONFARGS to `cargo build`:
# always the package ember (the init, `ember ctl`, `ember check`), without its default
# features; the adapters are packages of the workspace of their own, each selected with
# -p, and each an executable that ember runs for its [mqtt] / [dbus] table. The fourth
# field makes ember RDEPEND on the adapter: the ember.toml installed with it has the
# adapter's table, and ember would restart a missing executable for ever.
#   mqtt     ember-mqtt (rumqttc, rustls and ring, which compiles C with the target's
#            cross compiler), [mqtt] in ember.toml
#   dbus     ember-dbus (zbus), [dbus] in ember.toml, the D-Bus policy
#   analyze  ember's feature for `ember analyze blame|critical-chain|plot|verify` (about
#            100 KB); without it ember still keeps the timeline and `ember analyze dump`
# Never the test-hooks features: they let any client of the socket or any MQTT publisher
# panic ember or the adapter on purpose.
PACKAGECONFIG ??= "mqtt dbus analyze"
PACKAGECONFIG[mqtt] = "-p ember-mqtt,,,${PN}-mqtt"
PACKAGECONFIG[dbus] = "-p ember-dbus,,,${PN}-dbus"
PACKAGECONFIG[analyze] = "--features ember/analyze"
CARGO_BUILD_FLAGS:append = " --no-default-features -p ember"

# The adapters' packages this PACKAGECONFIG makes, and the executables installed into
# ${base_sbindir} from ${B}/target/<triple>/release: ember finds the adapters in the
# directory of its own executable.
EMBER_ADAPTER_PACKAGES = "${@bb.utils.contains('PACKAGECONFIG', 'mqtt', '${PN}-mqtt', '', d)} \
                          ${@bb.utils.contains('PACKAGECONFIG', 'dbus', '${PN}-dbus', '', d)}"
EMBER_BINARIES = "ember \
                  ${@bb.utils.contains('PACKAGECONFIG', 'mqtt', 'ember-mqtt', '', d)} \
                  ${@bb.utils.contains('PACKAGECONFIG', 'dbus', 'ember-dbus', '', d)}"

# Cargo.toml's release profile has strip = "symbols": the binaries would reach do_package
# already stripped (QA error already-stripped, and no ember-dbg). Cargo's environment
# configuration overrides the manifest's profile, so OE strips and splits debug info itself.
export CARGO_PROFILE_RELEASE_STRIP = "false"

do_install() {
    install -d ${D}${base_sbindir}
    for bin in ${EMBER_BINARIES}; do
        install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/$bin ${D}${base_sbindir}/$bin
    done

    install -d ${D}${sysconfdir}/ember/services.d
    install -m 0644 ${UNPACKDIR}/ember.toml ${D}${sysconfdir}/ember/ember.toml
    if ${@bb.utils.contains('PACKAGECONFIG', 'mqtt', 'true', 'false', d)}; then
        cat ${UNPACKDIR}/ember-mqtt.toml >> ${D}${sysconfdir}/ember/ember.toml
    fi
    if ${@bb.utils.contains('PACKAGECONFIG', 'dbus', 'true', 'false', d)}; then
        cat ${UNPACKDIR}/ember-dbus.toml >> ${D}${sysconfdir}/ember/ember.toml
        install -d ${D}${datadir}/dbus-1/system.d
        install -m 0644 ${S}/config/dbus-1/io.ember.Init1.conf ${D}${datadir}/dbus-1/system.d/
    fi

    install -m 0644 ${UNPACKDIR}/dbus.toml ${D}${sysconfdir}/ember/services.d/dbus.toml
    install -m 0644 ${UNPACKDIR}/syslog.toml ${D}${sysconfdir}/ember/services.d/syslog.toml
    # fstab's mounts, the root read-write (or read-only) as fstab says, the volatile
    # directories: what OE-core's other inits do at boot and ember itself does not.
    install -m 0644 ${UNPACKDIR}/mounts.toml ${D}${sysconfdir}/ember/services.d/mounts.toml
    # lo up, which a new kernel leaves down: nothing reaches 127.0.0.1 until it is.
    install -m 0644 ${UNPACKDIR}/loopback.toml ${D}${sysconfdir}/ember/services.d/loopback.toml
    # /etc/modules and /etc/modules-load.d (KERNEL_MODULE_AUTOLOAD), before the mounts.
    install -m 0644 ${UNPACKDIR}/modules.toml ${D}${sysconfdir}/ember/services.d/modules.toml
    # /etc/sysctl.d and /etc/sysctl.conf applied.
    install -m 0644 ${UNPACKDIR}/sysctl.toml ${D}${sysconfdir}/ember/services.d/sysctl.toml
    # run-postinsts (the postinsts left for the first boot), after the mounts.
    install -m 0644 ${UNPACKDIR}/postinsts.toml ${D}${sysconfdir}/ember/services.d/postinsts.toml
}

# The packages:
#   ember               /sbin/ember, /etc/ember/ember.toml, services.d/mounts.toml (the
#                       boot's fstab mounts: every service of this layer is after it),
#                       services.d/loopback.toml (lo up: mosquitto is after it),
#                       services.d/modules.toml (KERNEL_MODULE_AUTOLOAD's modules loaded:
#                       mounts is after it), services.d/sysctl.toml (sysctl -p) and
#                       services.d/postinsts.toml (run-postinsts: the layer's services
#                       are after it)
#   ember-mqtt          the MQTT adapter, run by ember as the service ember-mqtt under the
#                       user ember-mqtt ([mqtt] user's default). It needs no file of the
#                       system: ember hands it its settings, secrets included, on its
#                       standard input.
#   ember-dbus          the D-Bus adapter, run by ember as the service ember-dbus under the
#                       user ember-dbus ([dbus] user's default), which the policy lets own
#                       io.ember.Init1. The group ember is [dbus] control_group's default,
#                       whose members the policy and the adapter let start, stop and
#                       restart services. The bus itself: ember-service-dbus, or any other.
#   ember-service-dbus  the system bus as an ember service
#   ember-service-syslog  busybox's syslogd as an ember service
PACKAGES =+ "${EMBER_ADAPTER_PACKAGES} ${PN}-service-dbus ${PN}-service-syslog"

FILES:${PN}-mqtt += "${base_sbindir}/ember-mqtt"
FILES:${PN}-dbus += "${base_sbindir}/ember-dbus ${datadir}/dbus-1/system.d/io.ember.Init1.conf"
FILES:${PN}-service-dbus += "${sysconfdir}/ember/services.d/dbus.toml"
FILES:${PN}-service-syslog += "${sysconfdir}/ember/services.d/syslog.toml"

# Every file this recipe installs in /etc is a conffile: an upgrade keeps local edits.
CONFFILES:${PN} = "${sysconfdir}/ember/ember.toml ${sysconfdir}/ember/services.d/mounts.toml \
                   ${sysconfdir}/ember/services.d/loopback.toml \
                   ${sysconfdir}/ember/services.d/modules.toml \
                   ${sysconfdir}/ember/services.d/sysctl.toml \
                   ${sysconfdir}/ember/services.d/postinsts.toml"
CONFFILES:${PN}-service-dbus = "${sysconfdir}/ember/services.d/dbus.toml"
CONFFILES:${PN}-service-syslog = "${sysconfdir}/ember/services.d/syslog.toml"

RDEPENDS:${PN}-mqtt = "${PN}"
RDEPENDS:${PN}-dbus = "${PN}"
RDEPENDS:${PN}-service-dbus = "${PN} dbus"
RDEPENDS:${PN}-service-syslog = "${PN} busybox-syslog"

# The gettys on the machine's serial consoles come from their own recipe: SERIAL_CONSOLES
# is the MACHINE's, and this package is built once per CPU tune (as systemd recommends
# systemd-serialgetty).
RRECOMMENDS:${PN} += "${PN}-service-getty"
# packagegroup-core-boot recommends VIRTUAL-RUNTIME_base-utils-syslog (busybox-syslog by
# default), which only a sysvinit script or a systemd unit would start: with busybox's,
# its ember service.
RRECOMMENDS:${PN} += "${@'${PN}-service-syslog' if d.getVar('VIRTUAL-RUNTIME_base-utils-syslog') == 'busybox-syslog' else ''}"
RRECOMMENDS:${PN}-dbus = "${PN}-service-dbus"

USERADD_PACKAGES = "${EMBER_ADAPTER_PACKAGES}"
USERADD_PARAM:${PN}-mqtt = "--system --no-create-home --home-dir /nonexistent --shell /bin/false --user-group ember-mqtt"
GROUPADD_PARAM:${PN}-dbus = "--system ember"
USERADD_PARAM:${PN}-dbus = "--system --no-create-home --home-dir /nonexistent --shell /bin/false --user-group ember-dbus"

# init, telinit, halt, reboot, poweroff and shutdown: ember answers to each name (telinit
# as sysvinit's: 0, 6, q; shutdown as sysvinit's and systemd's, now only: -P|-r|-H now).
# OE-core's busybox builds no shutdown. OE-core's other owners of
# these links: busybox 50, sysvinit 50 for init and 200 for halt/reboot/poweroff, and
# systemd 300 for halt/reboot/poweroff (never in one image with ember: it needs the
# systemd distro feature); meta-oe's toybox 60.
ALTERNATIVE_PRIORITY = "300"
ALTERNATIVE:${PN} = "init telinit halt reboot poweroff shutdown"
ALTERNATIVE_LINK_NAME[init] = "${base_sbindir}/init"
ALTERNATIVE_LINK_NAME[telinit] = "${base_sbindir}/telinit"
ALTERNATIVE_LINK_NAME[halt] = "${base_sbindir}/halt"
ALTERNATIVE_LINK_NAME[reboot] = "${base_sbindir}/reboot"
ALTERNATIVE_LINK_NAME[poweroff] = "${base_sbindir}/poweroff"
ALTERNATIVE_LINK_NAME[shutdown] = "${base_sbindir}/shutdown"
ALTERNATIVE_TARGET = "${base_sbindir}/ember"
