#!/usr/bin/env python3
"""Runs tasks of meta-ember's recipes the way bitbake runs them, without the tasks they
depend on; yocto/check.sh calls it inside an OE build environment, after
`bitbake ember ember-service-getty -c unpack`.

bitbake parses the recipe (tinfoil: the same datastore `bitbake -e` shows). A shell
function is written as bb.build.exec_func_shell writes it for a real task, with bitbake's
own bb.data.emit_func (exported variables, the function, every shell function it calls),
and run with the task's [cleandirs] and [dirs]; a Python one runs through bb.build.exec_func,
with the modules OE_IMPORTS names, as in a real task. Only the tasks' dependencies are left
out: do_compile needs OE's Rust cross toolchain (hours to build on 2 cores), so check.sh
builds the unpacked, vendored tree with the host's cargo and hands the binaries in.

    check-install.py configure ENV_FILE
        runs ember's cargo_common_do_configure (the CARGO_HOME/config.toml that points
        cargo at the vendored crates) and writes the variables check.sh needs, as shell
        assignments, to ENV_FILE
    check-install.py install BIN_DIR OUT [PACKAGECONFIG]...
        into OUT/recipe with ember's PACKAGECONFIG as the configuration makes it, and into
        OUT/packageconfig-<words joined by "-", or "none"> with each PACKAGECONFIG given
        (as `PACKAGECONFIG:pn-ember = "..."` in local.conf would set it): puts the
        EMBER_BINARIES built into BIN_DIR where ember's do_compile would leave them, runs
        OE-core's license checksum check (populate_lic_qa_checksum, do_populate_lic's QA),
        ember's do_install, and do_package's copy and split into packages
        (perform_packagecopy, populate_packages: FILES against what was installed, with
        the installed-vs-shipped QA check); with the recipe's own PACKAGECONFIG also
        ember-service-getty's do_install, and ember-service-mosquitto's where its layer
        is in the build. Writes there: root/ (every ${D} merged); facts,
        in `bitbake -e`'s format (NAME="value"): PACKAGECONFIG, PACKAGES,
        USERADD_PACKAGES, whether useradd is inherited, and for each package FILES_IN (what
        populate_packages put in it), RDEPENDS, RRECOMMENDS, CONFFILES, USERADD_PARAM and
        GROUPADD_PARAM; preinst.<package>, the pkg_preinst of each package that has one
        (useradd's, for the packages that make users).

A task that bitbake cannot run, or that fails, fails here; so does a QA error, and a shell
function bitbake's parser rejects (parsing fails first).
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


def oe_imports(d):
    """OE-core's Python library (meta/lib/oe) where the classes' Python functions find it,
    as bitbake does for OE-core's `addpylib ${LAYERDIR}/lib oe` in its own processes."""
    import bb.parse.ast
    lib = os.path.join(d.getVar("COREBASE"), "meta", "lib")
    bb.parse.ast.PyLibNode(None, 0, lib, "oe").eval(d)


def task_dirs(d, func):
    for path in (d.getVarFlag(func, "cleandirs", True) or "").split():
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
    dirs = (d.getVarFlag(func, "dirs", True) or "").split()
    for path in dirs:
        os.makedirs(path, exist_ok=True)
    return dirs


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
    dirs = task_dirs(d, func)
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


def run_python_func(d, func, log):
    """bb.build.exec_func for one of the classes' Python functions, in its [dirs]; a QA
    error it reports (oe.qa.handle_error with the class in ERROR_QA) fails here."""
    import bb.build
    if not d.getVarFlag(func, "python", False):
        sys.exit("%s is not a Python function of %s" % (func, d.getVar("PN")))
    dirs = task_dirs(d, func)
    cwd = os.getcwd()
    if dirs:
        os.chdir(dirs[-1])
    try:
        bb.build.exec_func(func, d)
    finally:
        os.chdir(cwd)
    if d.getVar("QA_ERRORS_FOUND"):
        sys.exit("%s: %s found QA errors (above)" % (d.getVar("PN"), func))
    print("%s: %s ran" % (d.getVar("PN"), func), file=log)


def parse(tinfoil, pn, packageconfig=None):
    if packageconfig is None:
        return tinfoil.parse_recipe(pn)
    import bb.data
    config = bb.data.createCopy(tinfoil.config_data)
    # As a vendor's local.conf would say it.
    config.setVar("PACKAGECONFIG:pn-%s" % pn, packageconfig)
    # Another configuration gives the recipe's tasks other signatures than the ones the
    # server has from its parse: by design here, not the nondeterminism bitbake warns of.
    config.setVar("BB_HASH_IGNORE_MISMATCH", "1")
    fn = tinfoil.get_recipe_file(pn)
    return tinfoil.parse_recipe_file(fn, config_data=config)


def configure(tinfoil, env_file):
    d = tinfoil.parse_recipe("ember")
    run_shell_func(d, "cargo_common_do_configure", sys.stdout)
    names = ["S", "B", "D", "UNPACKDIR", "CARGO_HOME", "CARGO_TARGET_SUBDIR", "CARGO_BUILD_FLAGS",
             "PACKAGECONFIG_CONFARGS", "EMBER_BINARIES"]
    with open(env_file, "w") as f:
        for name in names:
            f.write("%s=%s\n" % (name, shlex.quote(d.getVar(name) or "")))


def install(tinfoil, bin_dir, out, packageconfig):
    import bb.data
    if packageconfig is not None:
        out = os.path.join(out, "packageconfig-" + ("-".join(packageconfig.split()) or "none"))
    else:
        out = os.path.join(out, "recipe")
    root = os.path.join(out, "root")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(root)
    facts = []

    def fact(name, value):
        facts.append('%s="%s"' % (name, " ".join((value or "").split())))

    d = parse(tinfoil, "ember", packageconfig)
    oe_imports(d)
    # The license files, as do_populate_lic checks them (its other steps need do_patch
    # and so quilt-native: a native build).
    run_python_func(d, "populate_lic_qa_checksum", sys.stdout)
    # Where cargo.bbclass's do_compile leaves the build: ${B}/target/<triple>/release.
    for name in d.getVar("EMBER_BINARIES").split():
        dest = os.path.join(d.getVar("B"), "target", d.getVar("CARGO_TARGET_SUBDIR"), name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(bin_dir, name), dest)
    run_shell_func(d, "do_install", sys.stdout)
    # do_package's first steps. The others strip (with the target's objcopy, which is
    # not built here: the binaries are the host's) and write the package data.
    task_dirs(d, "do_package")  # the task's [cleandirs]: PKGDEST, PKGDESTWORK
    run_python_func(d, "perform_packagecopy", sys.stdout)
    run_python_func(d, "populate_packages", sys.stdout)
    fact("PACKAGECONFIG", d.getVar("PACKAGECONFIG"))
    fact("PACKAGES", d.getVar("PACKAGES"))
    fact("USERADD_PACKAGES", d.getVar("USERADD_PACKAGES"))
    fact("INHERITS_USERADD", "1" if bb.data.inherits_class("useradd", d) else "0")
    pkgdest = d.getVar("PKGDEST")
    for pkg in d.getVar("PACKAGES").split():
        top = os.path.join(pkgdest, pkg)
        files = sorted("/" + os.path.relpath(os.path.join(dirpath, f), top)
                       for dirpath, _, names in os.walk(top) for f in names)
        fact("FILES_IN:%s" % pkg, " ".join(files))
        for var in ("RDEPENDS", "RRECOMMENDS", "CONFFILES", "USERADD_PARAM", "GROUPADD_PARAM"):
            fact("%s:%s" % (var, pkg), d.getVar("%s:%s" % (var, pkg)))
        # The preinst that useradd's populate_packages:prepend wrote: what the rootfs runs.
        preinst = d.getVar("pkg_preinst:%s" % pkg)
        if preinst:
            with open(os.path.join(out, "preinst." + pkg), "w") as f:
                f.write(preinst)
    shutil.copytree(d.getVar("D"), root, symlinks=True, dirs_exist_ok=True)

    if packageconfig is None:
        g = tinfoil.parse_recipe("ember-service-getty")
        oe_imports(g)
        run_python_func(g, "populate_lic_qa_checksum", sys.stdout)
        run_shell_func(g, "do_install", sys.stdout)
        shutil.copytree(g.getVar("D"), root, symlinks=True, dirs_exist_ok=True)
        fact("PACKAGE_ARCH:ember-service-getty", g.getVar("PACKAGE_ARCH"))
        # The dynamic layer's service, where meta-networking is in the build.
        try:
            tinfoil.get_recipe_file("ember-service-mosquitto")
        except Exception:
            fact("INSTALLED:ember-service-mosquitto", "0")
        else:
            m = tinfoil.parse_recipe("ember-service-mosquitto")
            oe_imports(m)
            run_python_func(m, "populate_lic_qa_checksum", sys.stdout)
            run_shell_func(m, "do_install", sys.stdout)
            shutil.copytree(m.getVar("D"), root, symlinks=True, dirs_exist_ok=True)
            fact("INSTALLED:ember-service-mosquitto", "1")

    with open(os.path.join(out, "facts"), "w") as f:
        f.write("\n".join(facts) + "\n")
    print("%s:\n%s" % (out, "\n".join(f for f in facts if not f.endswith('=""'))))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "configure":
        action = lambda t: configure(t, sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "install":
        def action(t):
            for packageconfig in [None] + sys.argv[4:]:
                install(t, os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]), packageconfig)
    else:
        sys.exit(__doc__)
    with tinfoil_module().Tinfoil() as tinfoil:
        tinfoil.prepare(config_only=False, quiet=2)
        action(tinfoil)


if __name__ == "__main__":
    main()
