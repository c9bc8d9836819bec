#!/usr/bin/env python3
"""Runs shell tasks of meta-ember's recipes the way bitbake runs them, without the tasks
they depend on; yocto/check.sh calls it inside an OE build environment, after
`bitbake ember ember-service-getty -c unpack`.

bitbake parses the recipe (tinfoil: the same datastore `bitbake -e` shows) and writes the
task's script with its own bb.data.emit_func, as bb.build.exec_func_shell does for a real
task (exported variables, the function, every shell function it calls), with the task's
[cleandirs] and [dirs]. Only the task's dependencies are left out: do_compile needs OE's
Rust cross toolchain (hours to build on 2 cores), so check.sh builds the unpacked,
vendored tree with the host's cargo and hands the binary in.

    check-install.py configure ENV_FILE
        runs ember's cargo_common_do_configure (the CARGO_HOME/config.toml that points
        cargo at the vendored crates) and writes the variables check.sh needs, as shell
        assignments, to ENV_FILE
    check-install.py install BIN_DIR ROOT
        puts the EMBER_BINARIES built into BIN_DIR where ember's do_compile would leave
        them, runs do_install of ember and ember-service-getty, and merges both ${D}
        into ROOT

A do_install that bitbake cannot run, or that fails, fails here; so does a shell function
bitbake's parser rejects (parsing fails first).
"""
import os
import shlex
import shutil
import subprocess
import sys


def tinfoil_module():
    bitbake = shutil.which("bitbake")
    if not bitbake:
        sys.exit("bitbake is not on PATH: run this inside an OE build environment")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(bitbake))), "lib"))
    import bb.tinfoil
    return bb.tinfoil


def run_shell_func(d, func, log):
    """bb.build.exec_func + exec_func_shell for one shell function, without fakeroot
    (nothing here changes ownership) and without the task's pre/postfuncs (named in the log)."""
    import bb.build
    import bb.data
    if not d.getVarFlag(func, "func", False) or d.getVarFlag(func, "python", False):
        sys.exit("%s is not a shell function of %s" % (func, d.getVar("PN")))
    for flag in ("prefuncs", "postfuncs"):
        extra = (d.getVarFlag(func, flag) or "").split()
        if extra:
            print("%s: %s[%s] not run: %s" % (d.getVar("PN"), func, flag, " ".join(extra)), file=log)
    for path in (d.getVarFlag(func, "cleandirs", True) or "").split():
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
    dirs = (d.getVarFlag(func, "dirs", True) or "").split()
    for path in dirs:
        os.makedirs(path, exist_ok=True)
    cwd = dirs[-1] if dirs else d.getVar("B")
    runfile = os.path.join(d.getVar("T"), "run.%s.check" % func)
    os.makedirs(os.path.dirname(runfile), exist_ok=True)
    d.delVarFlag("PWD", "export")
    with open(runfile, "w") as script:
        script.write(bb.build.shell_trap_code())
        bb.data.emit_func(func, script, d)
        script.write("cd '%s'\n%s\n" % (cwd, func))
    os.chmod(runfile, 0o775)
    run = subprocess.run([runfile], stdout=log, stderr=subprocess.STDOUT)
    if run.returncode != 0:
        sys.exit("%s: %s failed (exit %d); script %s" % (d.getVar("PN"), func, run.returncode, runfile))
    print("%s: %s ran (%s)" % (d.getVar("PN"), func, runfile), file=log)


def configure(tinfoil, env_file):
    d = tinfoil.parse_recipe("ember")
    run_shell_func(d, "cargo_common_do_configure", sys.stdout)
    names = ["S", "B", "D", "UNPACKDIR", "CARGO_HOME", "CARGO_TARGET_SUBDIR", "CARGO_BUILD_FLAGS",
             "PACKAGECONFIG_CONFARGS", "EMBER_BINARIES"]
    with open(env_file, "w") as f:
        for name in names:
            f.write("%s=%s\n" % (name, shlex.quote(d.getVar(name) or "")))


def install(tinfoil, bin_dir, root):
    os.makedirs(root, exist_ok=True)
    for pn in ("ember", "ember-service-getty"):
        d = tinfoil.parse_recipe(pn)
        if pn == "ember":
            # Where cargo.bbclass's do_compile leaves the build: ${B}/target/<triple>/release.
            for name in d.getVar("EMBER_BINARIES").split():
                dest = os.path.join(d.getVar("B"), "target", d.getVar("CARGO_TARGET_SUBDIR"), name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(os.path.join(bin_dir, name), dest)
        run_shell_func(d, "do_install", sys.stdout)
        image = d.getVar("D")
        shutil.copytree(image, root, symlinks=True, dirs_exist_ok=True)
        files = sorted(os.path.relpath(os.path.join(top, f), image)
                       for top, _, names in os.walk(image) for f in names)
        print("%s (PACKAGE_ARCH %s) installs: %s" % (pn, d.getVar("PACKAGE_ARCH"), " ".join(files)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "configure":
        action = lambda t: configure(t, sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "install":
        action = lambda t: install(t, os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]))
    else:
        sys.exit(__doc__)
    with tinfoil_module().Tinfoil() as tinfoil:
        tinfoil.prepare(config_only=False, quiet=2)
        action(tinfoil)


if __name__ == "__main__":
    main()
