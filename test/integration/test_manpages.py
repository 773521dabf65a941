"""Man pages ipamctl(1), grpc_health_probe(1) and meridio-ipam(8).

They are generated at build time from the programs' --help (help2man,
scripts/manpages.sh) and installed by the CMake install rules: `make
install DESTDIR=` must put them under <prefix>/share/man, man(1) must
render them without a groff warning, mandoc's linter must find nothing
at warning level or above, and each page must carry what its program's
--help says (ipamctl's also every command's own --help).
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
BUILD = BIN.parent
PAGES = {"ipamctl": "1", "grpc_health_probe": "1", "meridio-ipam": "8"}


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def rendered(page):
    """The page as man -l shows it in 80 columns, and groff's warnings."""
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "--no-hyphenation", "--no-justification", "-l", str(page)],
            env=env)
    text = re.sub(r".\x08", "", r.stdout)  # overstrike bold/underline
    return r.returncode, text, r.stderr


class ManPages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        base = os.environ.get("IPAM_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="manpages-", dir=base)
        cache = (BUILD / "CMakeCache.txt").read_text()
        cls.prefix = re.search(r"(?m)^CMAKE_INSTALL_PREFIX:PATH=(.*)$", cache).group(1)
        cls.dest = os.path.join(cls.tmp, "dest")
        r = run(["make", "-C", str(TOP), "install", f"BUILD={BUILD}", f"DESTDIR={cls.dest}"],
                timeout=600)
        if r.returncode != 0:
            raise RuntimeError("make install failed:\n" + r.stdout[-3000:] + r.stderr[-3000:])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def page(self, name):
        sec = PAGES[name]
        return Path(self.dest + self.prefix) / "share" / "man" / f"man{sec}" / f"{name}.{sec}"

    def test_installed(self):
        for name in PAGES:
            self.assertTrue(self.page(name).is_file(), self.page(name))

    def test_render_without_warnings(self):
        for name, sec in PAGES.items():
            with self.subTest(page=name):
                rc, text, err = rendered(self.page(name))
                self.assertEqual(rc, 0, err)
                self.assertEqual(err, "", "groff warnings")
                self.assertRegex(text, r"(?m)^%s\(%s\)" % (re.escape(name.upper()), sec))
                self.assertRegex(text, r"(?m)^NAME\n\s+%s\s+-\s+\S" % re.escape(name))
                self.assertIn("SEE ALSO", text)
                lint = run(["mandoc", "-T", "lint", "-W", "warning", str(self.page(name))])
                self.assertEqual((lint.returncode, lint.stdout + lint.stderr), (0, ""))

    def words(self, text):
        return " ".join(text.split())

    def test_pages_say_what_help_says(self):
        # The option lines of each --help are in its page.
        for name, flag in (("meridio-ipam", "--help"), ("grpc_health_probe", "-h")):
            with self.subTest(page=name):
                _, text, _ = rendered(self.page(name))
                page = self.words(text.replace("\u2010", "-").replace("\u2212", "-"))
                r = run([str(BIN / name), flag])
                help_text = r.stdout + r.stderr
                opts = re.findall(r"(?m)^\s+(-{1,2}[a-z][a-z-]*|IPAM_[A-Z0-9_]+)", help_text)
                self.assertTrue(opts, help_text)
                for o in opts:
                    self.assertIn(o, page)
        _, text, _ = rendered(self.page("meridio-ipam"))
        self.assertIn("--check", text.replace("\u2010", "-"))
        # ipamctl: a section per command, with that command's options.
        _, text, _ = rendered(self.page("ipamctl"))
        page = self.words(text.replace("\u2010", "-").replace("\u2212", "-"))
        top = run([str(BIN / "ipamctl"), "--help"]).stdout
        cmds = re.findall(r"(?m)^  ([a-z]+) ", top.split("commands:", 1)[1])
        self.assertIn("allocate", cmds)
        for c in cmds:
            self.assertIn("ipamctl %s" % c, page)
            sub = run([str(BIN / "ipamctl"), c, "--help"]).stdout
            for o in re.findall(r"(?m)^  (--[a-z][a-z-]*)", sub):
                self.assertIn(o, page, c)


if __name__ == "__main__":
    unittest.main()
