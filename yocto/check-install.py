#!/usr/bin/env python3
"""Runs the ember recipe's do_install as plain shell, with the variables bitbake would
set, into a temporary image directory; checks what it installs and, given an ember
binary (EMBER_BIN), that the installed configuration passes `ember check`.

There is no bitbake on these machines: this catches what a lint cannot, a do_install that
does not run or a default configuration that ember rejects.
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, "meta-ember/recipes-core/ember/ember_0.1.0.bb")
FILES = os.path.join(HERE, "meta-ember/recipes-core/ember/files")
ROOT = os.path.dirname(HERE)


def install_body():
    text = open(RECIPE).read()
    start = text.index("do_install() {") + len("do_install() {")
    body = text[start:text.index("\n}\n", start)]
    # The recipe's only inline Python: PACKAGECONFIG tests. Build with everything on.
    return re.sub(r"\$\{@bb\.utils\.contains\('PACKAGECONFIG', '\w+', 'true', 'false', d\)\}", "true", body)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        build = os.path.join(tmp, "build")
        os.makedirs(os.path.join(build, "target/release"))
        open(os.path.join(build, "target/release/ember"), "w").write("")
        variables = {
            "D": os.path.join(tmp, "image"), "B": build, "UNPACKDIR": FILES, "S": ROOT,
            "base_sbindir": "/sbin", "sysconfdir": "/etc", "datadir": "/usr/share",
            "CARGO_TARGET_SUBDIR": "release", "SERIAL_CONSOLES": "115200;ttyS0 115200;ttyAMA0",
            "EMBER_GETTY": "/sbin/getty",
        }
        script = "".join('%s="%s"\n' % kv for kv in variables.items()) + install_body()
        run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit("do_install failed (%d): %s" % (run.returncode, run.stderr.strip()))
        image = variables["D"]
        expected = [
            "sbin/ember", "etc/ember/ember.toml", "etc/ember/services.d/dbus.toml",
            "etc/ember/services.d/getty-ttyS0.toml", "etc/ember/services.d/getty-ttyAMA0.toml",
            "usr/share/dbus-1/system.d/io.ember.Init1.conf",
        ]
        missing = [f for f in expected if not os.path.exists(os.path.join(image, f))]
        if missing:
            sys.exit("do_install did not install: %s" % ", ".join(missing))
        ember = os.environ.get("EMBER_BIN")
        if ember:
            check = subprocess.run([ember, "check", "--config", os.path.join(image, "etc/ember/ember.toml")],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                sys.exit("the installed configuration fails `ember check`:\n" + check.stdout)
        print("do_install: %d files in place%s" % (len(expected), ", ember check passes" if ember else ""))


if __name__ == "__main__":
    main()
