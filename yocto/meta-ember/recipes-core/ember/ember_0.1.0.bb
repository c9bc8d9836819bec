SUMMARY = "ember: an init system and service supervisor for embedded Linux"
DESCRIPTION = "ember is PID 1 and a service supervisor: it starts the services \
described in /etc/ember/ember.toml and /etc/ember/services.d in dependency order and \
in parallel, restarts them, reaps orphans, and shuts down in steps. Optional MQTT and \
D-Bus control adapters."
HOMEPAGE = "https://example.com/ember"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
# HOMEPAGE is a placeholder until ember has a public home.
# The repository has no license file: the license line of Cargo.toml.
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=139d41a018a76e37b4d8d2ffa8810edc"

# The source is the ember tree this layer lives in (yocto/meta-ember inside it), through
# the symlink files/ember-src -> the top of that tree: its Cargo.toml, Cargo.lock, src/,
# ipc/ and the D-Bus policy. So the build uses exactly the Cargo.lock ember-crates.inc was
# generated from (CI checks both with yocto/update-crates.py --check), with no SRCREV to
# keep in step. A copy of the layer used apart from that tree sets, in a bbappend:
#   EMBER_SRC = "git://example.com/ember.git;protocol=https;branch=main;destsuffix=ember-src"
#   SRCREV = "<the commit whose Cargo.lock ember-crates.inc was generated from>"
EMBER_SRC ?= "file://ember-src/Cargo.toml \
              file://ember-src/Cargo.lock \
              file://ember-src/src \
              file://ember-src/ipc \
              file://ember-src/config/dbus-1/io.ember.Init1.conf \
              "

inherit cargo cargo-update-recipe-crates update-alternatives useradd

require ${BPN}-crates.inc

SRC_URI += "${EMBER_SRC} \
            file://ember.toml \
            file://ember-mqtt.toml \
            file://ember-dbus.toml \
            file://dbus.toml \
            file://getty.toml.in \
            "

S = "${UNPACKDIR}/ember-src"

# Cargo features, as in the README: mqtt, dbus and analyze, all on by default.
PACKAGECONFIG ??= "mqtt dbus analyze"
PACKAGECONFIG[mqtt] = "--features mqtt"
PACKAGECONFIG[dbus] = "--features dbus"
PACKAGECONFIG[analyze] = "--features analyze"
CARGO_BUILD_FLAGS:append = " --no-default-features"

# Cargo.toml's release profile has strip = "symbols": the binary would reach do_package
# already stripped (QA error already-stripped, and no ember-dbg). Cargo's environment
# configuration overrides the manifest's profile, so OE strips and splits debug info itself.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# One getty per SERIAL_CONSOLES entry ("115200;ttyS0 115200;ttyS1"): busybox's getty
# (VIRTUAL-RUNTIME_login_manager) or util-linux's agetty, which take the same arguments.
EMBER_GETTY ?= "${base_sbindir}/getty"

do_install() {
    install -d ${D}${base_sbindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/ember ${D}${base_sbindir}/ember

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

    for entry in ${SERIAL_CONSOLES}; do
        speed=$(echo "$entry" | cut -d';' -f1)
        tty=$(echo "$entry" | cut -d';' -f2)
        sed -e "s|@TTY@|$tty|g" -e "s|@SPEED@|$speed|g" -e "s|@GETTY@|${EMBER_GETTY}|g" \
            ${UNPACKDIR}/getty.toml.in > ${D}${sysconfdir}/ember/services.d/getty-$tty.toml
        chmod 0644 ${D}${sysconfdir}/ember/services.d/getty-$tty.toml
    done

    install -m 0644 ${UNPACKDIR}/dbus.toml ${D}${sysconfdir}/ember/services.d/dbus.toml
}

PACKAGES =+ "${PN}-service-dbus"

FILES:${PN} += "${datadir}/dbus-1/system.d"
CONFFILES:${PN} = "${sysconfdir}/ember/ember.toml"

# ember-service-dbus: the system bus as an ember service.
FILES:${PN}-service-dbus += "${sysconfdir}/ember/services.d/dbus.toml"
RDEPENDS:${PN}-service-dbus = "${PN} dbus"

# The "ember" group of the D-Bus policy and [dbus] control_group.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system ember"

# init, halt, reboot and poweroff: ember answers to each name. Above busybox and sysvinit
# (50) and toybox (60), like runit (300).
ALTERNATIVE_PRIORITY = "300"
ALTERNATIVE:${PN} = "init halt reboot poweroff"
ALTERNATIVE_LINK_NAME[init] = "${base_sbindir}/init"
ALTERNATIVE_LINK_NAME[halt] = "${base_sbindir}/halt"
ALTERNATIVE_LINK_NAME[reboot] = "${base_sbindir}/reboot"
ALTERNATIVE_LINK_NAME[poweroff] = "${base_sbindir}/poweroff"
ALTERNATIVE_TARGET = "${base_sbindir}/ember"
