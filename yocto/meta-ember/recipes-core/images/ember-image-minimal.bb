SUMMARY = "A small image that boots with ember as PID 1"
DESCRIPTION = "core-image-minimal's content with ember as the init manager \
(INIT_MANAGER = \"ember\"), a getty on each serial console, the D-Bus system bus as an \
ember service, and mosquitto as one where meta-networking is in the build."
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL} \
                 ember ember-service-getty ember-service-dbus \
                 ${@bb.utils.contains('BBFILE_COLLECTIONS', 'networking-layer', 'ember-service-mosquitto', '', d)} \
                 "
IMAGE_LINGUAS = " "

# Needs INIT_MANAGER = "ember" (local.conf or the distro conf): see README.md.

inherit core-image

IMAGE_ROOTFS_SIZE ?= "8192"
