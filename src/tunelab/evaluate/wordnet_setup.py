"""Install WordNet 3.0 for nltk offline, from Debian's ``wordnet-base`` + ``wordnet-sense-index``.

Run ``python -m tunelab.evaluate.wordnet_setup`` (as root it runs ``apt-get install`` when the
files are missing). The dictionary files are copied to ``<target>/corpora/wordnet/`` (default
target: the first entry of ``$NLTK_DATA``, else ``~/nltk_data``) together with the
``lexnames`` file nltk's WordNet reader needs and Debian does not ship.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from tunelab.errors import TunelabError

SETUP_COMMAND = "python -m tunelab.evaluate.wordnet_setup"
MISSING = f"METEOR needs WordNet for nltk; install it with `{SETUP_COMMAND}`"
DEBIAN_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
)  # fmt: skip
# WordNet 3.0 lexicographer files: number, name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
LEXNAMES = (
    ["adj.all", "adj.pert", "adv.all", "noun.Tops"]
    + [f"noun.{n}" for n in (
        "act animal artifact attribute body cognition communication event feeling food group "
        "location motive object person phenomenon plant possession process quantity relation "
        "shape state substance time").split()]
    + [f"verb.{n}" for n in (
        "body change cognition communication competition consumption contact creation emotion "
        "motion perception possession social stative weather").split()]
    + ["adj.ppl"]
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The standard 45-line ``lexnames`` file: ``00\\tadj.all\\t3`` ... ``44\\tadj.ppl\\t3``."""
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def default_target() -> Path:
    """First ``$NLTK_DATA`` entry, else ``~/nltk_data`` (both are on nltk's search path)."""
    env = os.environ.get("NLTK_DATA")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / "nltk_data"


def install_debian_packages() -> None:
    """``apt-get install`` the WordNet packages (needs root)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *DEBIAN_PACKAGES]
    if subprocess.run(apt, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(apt, env=env, check=True)


def install(target: Path, source: Path = DEBIAN_DIR) -> Path:
    """Copy the WordNet files from ``source`` into ``target/corpora/wordnet``; return that dir."""
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        raise TunelabError(
            f"WordNet files missing in {source}: {', '.join(missing)}; install the Debian "
            f"packages {' '.join(DEBIAN_PACKAGES)}"
        )
    out = target / "corpora" / "wordnet"
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(source / name, out / name)
    (out / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    return out


def wordnet_available() -> bool:
    """True when ``nltk.corpus.wordnet`` loads."""
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
    except LookupError:
        return False
    return True


def wordnet_found() -> bool:
    """True when nltk finds WordNet on its data path (a quick look: nothing is loaded)."""
    import nltk.data

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


def require_wordnet() -> None:
    """Raise a TunelabError naming the setup command when WordNet is not installed."""
    if not wordnet_available():
        raise TunelabError(MISSING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=None, help="nltk data dir")
    parser.add_argument("--source", type=Path, default=DEBIAN_DIR, help="WordNet dict dir")
    args = parser.parse_args(argv)
    if args.source == DEBIAN_DIR and not (DEBIAN_DIR / "index.sense").is_file():
        install_debian_packages()
    out = install(args.target or default_target(), args.source)
    print(f"WordNet installed in {out}")


if __name__ == "__main__":
    main()
