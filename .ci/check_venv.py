"""Check that this interpreter is the project venv and sees no Python package from outside it.

    .venv/bin/python .ci/check_venv.py .venv        (run by `make install`, so by CI too)

Fails (exit 1, one line per problem) when: the interpreter is not the venv given; the venv was
made with --system-site-packages; a site-packages or dist-packages folder outside the venv is
on sys.path (PYTHONPATH, user site, .pth files); or a distribution that dqt-hw[all] needs,
directly or through another, is missing from the venv or installed outside it. So the tests
that `make test` runs next cannot pass because of a package the machine happened to have.
"""

import importlib.metadata
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_FOLDERS = ("site-packages", "dist-packages")


def _inside(path, folder):
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _name(requirement):
    """(distribution name, extras) of a requirement such as 'amaranth[builtin-yosys]>=0.5'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1), extras


def _applies(requirement, extras):
    """Whether a requirement's environment marker holds here, for the given extras."""
    if ";" not in requirement:
        return True
    from packaging.markers import Marker
    marker = Marker(requirement.split(";", 1)[1])
    return any(marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def _key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def required_distributions(root="dqt-hw", extras=("all",)):
    """{distribution name: Distribution, or None if missing} of all that root[extras] needs."""
    found, seen, todo = {}, set(), [(root, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (_key(name), wanted) in seen:
            continue
        seen.add((_key(name), wanted))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            found[_key(name)] = None
            continue
        found[_key(name)] = dist
        for requirement in dist.requires or []:
            if _applies(requirement, wanted):
                child, child_extras = _name(requirement)
                todo.append((child, frozenset(child_extras)))
    return found


def problems(venv, *, prefix=None, base_prefix=None, path=None, config=None, dists=None):
    """Every way this interpreter could use packages from outside `venv` (empty: none)."""
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    path = sys.path if path is None else path
    venv = Path(venv)
    found = []
    if not _inside(prefix, venv) or not _inside(venv, prefix):
        found.append(f"sys.prefix is {prefix}, not the project venv {venv.resolve()}")
    if Path(prefix).resolve() == Path(base_prefix).resolve():
        found.append(f"{prefix} is not a virtual environment")
    if config is None:
        cfg = Path(prefix) / "pyvenv.cfg"
        config = cfg.read_text() if cfg.is_file() else ""
    if re.search(r"^\s*include-system-site-packages\s*=\s*true\s*$", config, re.M | re.I):
        found.append(f"{prefix}/pyvenv.cfg includes the system site-packages; recreate the "
                     f"venv without --system-site-packages")
    for entry in path:
        if (entry and any(part in SITE_FOLDERS for part in Path(entry).parts)
                and not _inside(entry, prefix)):
            found.append(f"sys.path holds {entry}, a package folder outside the venv")
    dists = required_distributions() if dists is None else dists
    for name, dist in sorted(dists.items()):
        if dist is None:
            found.append(f"{name} is not installed in the venv (run `make install`)")
        elif not _inside(dist.locate_file(""), prefix):
            found.append(f"{name} comes from {dist.locate_file('')}, outside the venv")
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    venv = Path(argv[0]) if argv else ROOT / ".venv"
    if not venv.is_absolute():
        venv = Path.cwd() / venv
    found = problems(venv)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if found:
        return 1
    count = len(required_distributions())
    print(f"{os.path.relpath(sys.prefix)}: a venv of Python {sys.version.split()[0]} with all "
          f"{count} distributions dqt-hw[all] needs, none from outside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
