"""Every file the build read outside the tree comes from a package that
scripts/deps.sh installs, or from a hard dependency of one.

A fresh Debian 12 machine gets only what deps.sh names (with
--no-install-recommends) plus the essential packages. A file read from any
other package builds on a developer's machine that happens to have it and
fails on a new one (it happened: /usr/include/google/protobuf/empty.proto,
from libprotobuf-dev, only recommended by protobuf-compiler).

What the build read is taken from what it wrote down: the compiler's
dependency files (*.o.d), protoc-c's (gen/**/*.proto.d), the explicit
dependencies of CMake's custom commands (build.make), and the tools and
pkg-config modules CMake found (CMakeCache.txt). Each path is looked up
with `dpkg -S`; the allowed packages are `apt-cache depends --recurse`
without recommends or suggests, from deps.sh's list and the essential set.
"""

import glob
import os
import re
import shlex
import subprocess
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(_HERE))
BIN_DIR = os.environ.get("IPAM_BIN_DIR") or os.path.join(SRC, "build", "bin")
BUILD = os.path.dirname(os.path.abspath(BIN_DIR))


def inside(path, roots):
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def make_deps(text):
    """Paths of a make-style dependency file (target: dep dep \\ ...)."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if ":" not in line:
            continue
        # the first ": " after the target(s); paths hold no ": "
        rhs = line.split(": ", 1)[1] if ": " in line else ""
        out.extend(shlex.split(rhs.replace("\\ ", "\0"))
                   if rhs else [])
    return [p.replace("\0", " ") for p in out]


def files_read(build):
    """{absolute path: where it was seen} of what the build read."""
    seen = {}

    def add(path, why):
        if os.path.isabs(path):
            seen.setdefault(os.path.normpath(path), why)

    for d in glob.glob(os.path.join(build, "**", "*.o.d"), recursive=True):
        with open(d, encoding="utf-8", errors="replace") as f:
            for p in make_deps(f.read()):
                add(p, "compiler: " + os.path.relpath(d, build))
    for d in glob.glob(os.path.join(build, "gen", "**", "*.proto.d"),
                       recursive=True):
        with open(d, encoding="utf-8") as f:
            for p in make_deps(f.read()):
                add(p, "protoc-c: " + os.path.relpath(d, build))
    for bm in glob.glob(os.path.join(build, "CMakeFiles", "*", "build.make")):
        with open(bm, encoding="utf-8", errors="replace") as f:
            for line in f:
                # explicit dependencies: "out: /abs/in" (no recipe lines)
                m = re.match(r"^(\S+): (/\S+)$", line.rstrip("\n"))
                if m and not m.group(1).startswith("."):
                    add(m.group(2), "cmake: " + os.path.relpath(bm, build))
                # import paths handed to protoc / protoc-c
                if "protoc" in line:
                    for inc in re.findall(r"\s-I(/\S+)", line):
                        add(inc, "protoc -I: " + os.path.relpath(bm, build))
    with open(os.path.join(build, "CMakeCache.txt"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_]+):FILEPATH=(/\S+)$", line.strip())
            if m and os.path.isfile(m.group(2)):
                add(m.group(2), "CMakeCache: " + m.group(1))
    # pkg-config modules CMake used: their .pc files
    mods = set()
    with open(os.path.join(build, "CMakeCache.txt"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^__pkg_config_arguments_\w+:INTERNAL=(.*)$", line.strip())
            if m:
                mods.update(a for a in m.group(1).split(";")
                            if a and a not in ("REQUIRED", "IMPORTED_TARGET",
                                               "QUIET", "GLOBAL"))
    for mod in sorted(mods):
        r = subprocess.run(["pkg-config", "--path", mod], capture_output=True,
                           text=True)
        if r.returncode == 0:
            add(r.stdout.strip(), "pkg-config module " + mod)
    return seen


def dpkg_search(paths):
    """{path: [packages]} for the paths `dpkg -S` knows (one call)."""
    if not paths:
        return {}
    r = subprocess.run(["dpkg", "-S"] + sorted(paths), capture_output=True,
                       text=True)
    out = {}
    for line in r.stdout.splitlines():
        if ": " not in line or line.startswith("diversion "):
            continue
        pkgs, path = line.split(": ", 1)
        if path in paths:
            out[path] = [q.strip().split(":")[0] for q in pkgs.split(",")]
    return out


def owners(paths):
    """{path: [packages]}; a path is looked up as given, then resolved, then
    with or without /usr (merged /usr: dpkg may have /lib/... registered)."""
    out = {}
    todo = set(paths)
    for variant in (lambda p: p, os.path.realpath,
                    lambda p: p[4:] if p.startswith("/usr/") else "/usr" + p,
                    lambda p: (lambda q: q[4:] if q.startswith("/usr/")
                               else "/usr" + q)(os.path.realpath(p))):
        names = {variant(p): p for p in todo}
        for c, pkgs in dpkg_search(set(names)).items():
            out[names[c]] = pkgs
        todo -= set(out)
    return out


def closure(pkgs):
    """Packages reachable from pkgs through Depends and Pre-Depends."""
    r = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends",
         "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
         "--no-enhances"] + sorted(pkgs),
        capture_output=True, text=True, check=True)
    out = set()
    for line in r.stdout.splitlines():
        if line and not line[0].isspace():
            out.add(line.strip().strip("<>").split(":")[0])
        else:
            m = re.match(r"^\s*\|?(?:Pre)?Depends: <?([^>\s]+)>?", line)
            if m:
                out.add(m.group(1).split(":")[0])
    return out


def essential():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential} "
                        "${Priority}\\n"], capture_output=True, text=True,
                       check=True)
    return {l.split()[0] for l in r.stdout.splitlines()
            if len(l.split()) >= 2 and (l.split()[1] == "yes"
                                        or l.split()[-1] == "required")}


class BuildDeps(unittest.TestCase):

    def test_every_file_read_outside_the_tree_is_from_a_listed_package(self):
        self.assertTrue(os.path.isfile(os.path.join(BUILD, "CMakeCache.txt")),
                        "no build in %s" % BUILD)
        listed = subprocess.run([os.path.join(SRC, "scripts", "deps.sh"),
                                 "--list"], capture_output=True, text=True,
                                check=True).stdout.split()
        self.assertIn("libgrpc-dev", listed)
        allowed = closure(set(listed) | essential())
        read = files_read(BUILD)
        outside = {p: w for p, w in read.items()
                   if not inside(p, [SRC, BUILD])}
        # the compiler's dependency files alone list hundreds of headers
        self.assertGreater(len(outside), 100, "too few files found: %s"
                           % sorted(outside)[:20])
        self.assertTrue(any(p.endswith("/grpc/grpc.h") for p in outside))
        own = owners(sorted(outside))
        bad = []
        for p, why in sorted(outside.items()):
            if why.startswith("protoc -I"):
                bad.append("%s (%s): proto imports must resolve inside the "
                           "tree" % (p, why))
            elif p not in own:
                bad.append("%s (%s): no package owns it" % (p, why))
            elif not set(own[p]) & allowed:
                bad.append("%s (%s): from %s, which neither deps.sh nor a "
                           "hard dependency of its packages installs"
                           % (p, why, ", ".join(own[p])))
        self.assertEqual(bad, [], "\n" + "\n".join(bad))


if __name__ == "__main__":
    unittest.main()
