"""What the pages' tests share: a hostile project, the pages to visit, checks of what must not leak."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SAMPLES

# A repository is hostile: its file names, function names and comments carry HTML that
# would run script in a page that forgot to escape it. Any of it running sets window.pwned.
EVIL_FILE = "evil<img src=x onerror=window.pwned=1>.cpp"
EVIL_COMMENT = "// </pre><script>window.pwned=2</script><b>bold</b> from a hostile repository"
EVIL_FUNCTION = "run<script>"
HOSTILE_SOURCE = f"""{EVIL_COMMENT}
template <class T> int run() {{ return (int)sizeof(T); }}

struct script {{ char c[3]; }};

int main() {{ return run<script>(); }}
"""


def write_hostile_project(root: Path) -> Path:
    """A project whose file, function and comment are HTML (built by its Makefile)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / EVIL_FILE).write_text(HOSTILE_SOURCE)
    (root / "Makefile").write_text(
        "hostile:\n\t$(CXX) $(CXXFLAGS) -o hostile 'evil<img src=x onerror=window.pwned=1>.cpp'\n"
    )
    return root


def copy_samples(dest: Path, *names: str) -> None:
    import shutil

    for n in names:
        shutil.copytree(SAMPLES / n, dest / n)


# every page, with what stands for an id in it; none may show anything without a token
PAGES = [
    "/ui/runs",
    "/ui/runs.json",
    "/ui/runs/{run}",
    "/ui/runs/{run}/coverage",
    "/ui/corpus",
    "/ui/binaries",
    "/ui/binaries/{binary}",
    "/ui/functions/{function}",
    "/ui/builds/{build}",
    "/ui/export",
]

NO_INJECTION = (
    "document.querySelectorAll('script').length === 1"
    " && document.querySelectorAll('img, b, iframe, object').length === 0"
    " && window.pwned === undefined"
)
