SUMMARY = "mosquitto as a service of ember"
DESCRIPTION = "An /etc/ember/services.d entry that runs the mosquitto MQTT broker \
under ember, which the ember [mqtt] adapter publishes to."
SECTION = "base"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://mosquitto.toml"

S = "${UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${sysconfdir}/ember/services.d
    install -m 0644 ${UNPACKDIR}/mosquitto.toml ${D}${sysconfdir}/ember/services.d/mosquitto.toml
}

FILES:${PN} = "${sysconfdir}/ember/services.d/mosquitto.toml"
RDEPENDS:${PN} = "ember mosquitto"
