SUMMARY = "ember: an init system and service supervisor for embedded Linux"
DESCRIPTION = "ember is PID 1 and a service supervisor: it starts the services \
described in /etc/ember/ember.toml and /etc/ember/services.d in dependency order and \
in parallel, restarts them, reaps orphans, and shuts down in steps. Optional MQTT and \
D-Bus control adapters."
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
# here (cargo loads them all, even to build one package). A new member crate (say mqtt/
# for ember-mqtt) is added here, and its executable to EMBER_BINARIES.
EMBER_CRATES_SRC = "file://ember-src/src \
                    file://ember-src/ipc \
                    "
EMBER_SRC ?= "file://ember-src/Cargo.toml \
              file://ember-src/Cargo.lock \
              file://ember-src/LICENSE-MIT \
              file://ember-src/LICENSE-APACHE \
              ${EMBER_CRATES_SRC} \
              file://ember-src/config/dbus-1/io.ember.Init1.conf \
              "

inherit cargo cargo-update-recipe-crates update-alternatives useradd

require ${BPN}-crates.inc

SRC_URI += "${EMBER_SRC} \
            file://ember.toml \
            file://ember-mqtt.toml \
            file://ember-dbus.toml \
            file://dbus.toml \
            "

S = "${UNPACKDIR}/ember-src"

# Cargo features of the ember package: mqtt, dbus and analyze, all on by default (as in
# Cargo.toml). The build is always --no-default-features plus one --features per item
# (cargo.bbclass passes PACKAGECONFIG_CONFARGS to `cargo build`).
PACKAGECONFIG ??= "mqtt dbus analyze"
PACKAGECONFIG[mqtt] = "--features mqtt"
PACKAGECONFIG[dbus] = "--features dbus"
PACKAGECONFIG[analyze] = "--features analyze"
CARGO_BUILD_FLAGS:append = " --no-default-features"

# The executables installed into ${base_sbindir}, from ${B}/target/<triple>/release.
EMBER_BINARIES = "ember"

# Cargo.toml's release profile has strip = "symbols": the binary would reach do_package
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
}

PACKAGES =+ "${PN}-service-dbus"

FILES:${PN} += "${datadir}/dbus-1/system.d"
# Every file this recipe installs in /etc is a conffile: an upgrade keeps local edits.
CONFFILES:${PN} = "${sysconfdir}/ember/ember.toml"

# ember-service-dbus: the system bus as an ember service.
FILES:${PN}-service-dbus += "${sysconfdir}/ember/services.d/dbus.toml"
CONFFILES:${PN}-service-dbus = "${sysconfdir}/ember/services.d/dbus.toml"
RDEPENDS:${PN}-service-dbus = "${PN} dbus"

# The gettys on the machine's serial consoles come from their own recipe: SERIAL_CONSOLES
# is the MACHINE's, and this package is built once per CPU tune (as systemd recommends
# systemd-serialgetty).
RRECOMMENDS:${PN} += "${PN}-service-getty"

# The "ember" group of the D-Bus policy and [dbus] control_group.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system ember"

# init, halt, reboot and poweroff: ember answers to each name. OE-core's other owners of
# these links: busybox 50, sysvinit 50 for init and 200 for halt/reboot/poweroff, and
# systemd 300 for halt/reboot/poweroff (never in one image with ember: it needs the
# systemd distro feature); meta-oe's toybox 60.
ALTERNATIVE_PRIORITY = "300"
ALTERNATIVE:${PN} = "init halt reboot poweroff"
ALTERNATIVE_LINK_NAME[init] = "${base_sbindir}/init"
ALTERNATIVE_LINK_NAME[halt] = "${base_sbindir}/halt"
ALTERNATIVE_LINK_NAME[reboot] = "${base_sbindir}/reboot"
ALTERNATIVE_LINK_NAME[poweroff] = "${base_sbindir}/poweroff"
ALTERNATIVE_TARGET = "${base_sbindir}/ember"
