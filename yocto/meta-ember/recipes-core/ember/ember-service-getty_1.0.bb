SUMMARY = "A getty on each serial console of the machine, as ember services"
DESCRIPTION = "One /etc/ember/services.d/getty-<tty>.toml per SERIAL_CONSOLES entry \
of the MACHINE: ember runs a getty on that console and starts it again after each \
logout."
HOMEPAGE = "https://example.com/ember"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://getty.toml.in;beginline=1;endline=1;md5=02e7300e8df2c32a53ae1e8d6e9d768f"

SRC_URI = "file://getty.toml.in"

S = "${UNPACKDIR}"

INHIBIT_DEFAULT_DEPS = "1"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# busybox's getty (VIRTUAL-RUNTIME_login_manager in init-manager-ember.inc) or
# util-linux's agetty, which take the same arguments.
EMBER_GETTY ?= "${base_sbindir}/getty"

do_install() {
    install -d ${D}${sysconfdir}/ember/services.d
    # SERIAL_CONSOLES ("115200;ttyS0 115200;ttyAMA0") is expanded into the function before
    # any shell reads it: in a quoted assignment its ';' stay part of the value, where a bare
    # `for entry in ${SERIAL_CONSOLES}` would end the list at the first ';' (bitbake's own
    # shell parser rejects that function at parse time).
    consoles="${SERIAL_CONSOLES}"
    for entry in $consoles; do
        speed=$(echo "$entry" | cut -d';' -f1)
        tty=$(echo "$entry" | cut -d';' -f2)
        sed -e "s|@TTY@|$tty|g" -e "s|@SPEED@|$speed|g" -e "s|@GETTY@|${EMBER_GETTY}|g" \
            ${UNPACKDIR}/getty.toml.in > ${D}${sysconfdir}/ember/services.d/getty-$tty.toml
        chmod 0644 ${D}${sysconfdir}/ember/services.d/getty-$tty.toml
    done
}

# SERIAL_CONSOLES is the MACHINE's: two machines of one CPU tune have different gettys, so
# this package is machine-specific (as OE-core's systemd-serialgetty, sysvinit-inittab and
# busybox-inittab are).
PACKAGE_ARCH = "${MACHINE_ARCH}"

CONFFILES:${PN} = "${sysconfdir}/ember/services.d/getty-*.toml"
# A machine without serial consoles gets an empty package.
ALLOW_EMPTY:${PN} = "1"
RDEPENDS:${PN} = "${VIRTUAL-RUNTIME_login_manager} ember"
