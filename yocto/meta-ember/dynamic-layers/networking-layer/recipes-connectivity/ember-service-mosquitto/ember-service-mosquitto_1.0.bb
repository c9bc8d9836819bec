SUMMARY = "mosquitto as a service of ember"
DESCRIPTION = "An /etc/ember/services.d entry that runs the mosquitto MQTT broker \
under ember, which ember's MQTT adapter (ember-mqtt) publishes to."
HOMEPAGE = "https://example.com/ember"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://mosquitto.toml;beginline=1;endline=1;md5=02e7300e8df2c32a53ae1e8d6e9d768f"

SRC_URI = "file://mosquitto.toml"

S = "${UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${sysconfdir}/ember/services.d
    install -m 0644 ${UNPACKDIR}/mosquitto.toml ${D}${sysconfdir}/ember/services.d/mosquitto.toml
}

CONFFILES:${PN} = "${sysconfdir}/ember/services.d/mosquitto.toml"
RDEPENDS:${PN} = "ember mosquitto"
