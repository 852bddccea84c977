"""One path policy: a user-given path must resolve, symlinks followed, to a regular file inside its root."""

from __future__ import annotations

import os
import threading

import pytest

from hfnet_core.errors import HfnetError
from hfnet_core.paths import PathError, check_path_text, regular_file_problem, resolve_inside


@pytest.fixture
def tree(tmp_path):
    """root/ with a file, a sub-folder, and outside/ with a secret, plus links in and out of the root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.safetensors").write_bytes(b"x")
    (root / "sub" / "b.mp4").write_bytes(b"y")
    (outside / "secret.safetensors").write_bytes(b"z")
    (root / "inner_link.safetensors").symlink_to(root / "sub" / "b.mp4")
    (root / "escape.safetensors").symlink_to(outside / "secret.safetensors")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    return root, outside


def test_paths_inside_the_root_resolve(tree):
    root, _ = tree
    assert resolve_inside(root, "a.safetensors") == root / "a.safetensors"
    assert resolve_inside(root, "sub/../a.safetensors") == root / "a.safetensors"  # ".." that stays inside
    assert resolve_inside(root, str(root / "sub" / "b.mp4")) == root / "sub" / "b.mp4"  # absolute, inside
    assert resolve_inside(root, "inner_link.safetensors") == root / "sub" / "b.mp4"  # link to inside: fine
    assert resolve_inside(root, "sub", kind="dir") == root / "sub"
    assert resolve_inside(root, "new/file.txt", kind="any") == root / "new" / "file.txt"  # may not exist yet


@pytest.mark.parametrize("typed", ["../outside/secret.safetensors", "sub/../../outside/secret.safetensors",
                                   "escape.safetensors", "escape_dir/secret.safetensors", "/etc/passwd", "/"])
def test_paths_leaving_the_root_are_refused_naming_it(tree, typed):
    root, _ = tree
    with pytest.raises(PathError) as e:
        resolve_inside(root, typed, what="the checkpoint folder")
    msg = str(e.value)
    assert "outside the checkpoint folder" in msg and str(root) in msg and typed in msg


def test_symlinked_root_and_several_roots(tree, tmp_path):
    root, outside = tree
    link_root = tmp_path / "root_link"
    link_root.symlink_to(root, target_is_directory=True)
    assert resolve_inside(link_root, "a.safetensors") == root / "a.safetensors"  # the root itself resolves
    assert resolve_inside([root, outside], str(outside / "secret.safetensors")) == outside / "secret.safetensors"
    assert resolve_inside([root, outside], "escape.safetensors") == outside / "secret.safetensors"
    assert resolve_inside([root, outside], "a.safetensors") == root / "a.safetensors"  # relative: first root
    with pytest.raises(PathError, match="no folder"):
        resolve_inside([], "a.safetensors")


def test_nul_bytes_are_a_clear_error_not_a_bare_value_error(tree):
    root, _ = tree
    for bad in ("a\x00.safetensors", b"a\x00b"):
        with pytest.raises(PathError, match="NUL byte") as e:
            resolve_inside(root, bad)
        assert isinstance(e.value, HfnetError)
    with pytest.raises(PathError, match="NUL byte"):
        resolve_inside("/tmp\x00", "a")
    with pytest.raises(PathError, match="NUL byte"):
        check_path_text("x\x00y")
    with pytest.raises(PathError, match="not a path"):
        check_path_text(3)  # type: ignore[arg-type]
    assert check_path_text(b"plain") == "plain"


def test_missing_folders_and_special_files_are_refused(tree):
    root, _ = tree
    with pytest.raises(PathError, match="no such file"):
        resolve_inside(root, "nope.safetensors")
    with pytest.raises(PathError, match="a folder, not a regular file"):
        resolve_inside(root, "sub")
    with pytest.raises(PathError, match="not a folder"):
        resolve_inside(root, "a.safetensors", kind="dir")
    with pytest.raises(PathError, match="empty"):
        resolve_inside(root, "  ")
    with pytest.raises(ValueError, match="kind"):
        resolve_inside(root, "a.safetensors", kind="fifo")


def test_a_fifo_is_refused_without_blocking(tree):
    """Opening a FIFO for reading blocks until a writer appears: it must be refused from its stat alone."""
    root, _ = tree
    fifo = root / "pipe.mp4"
    os.mkfifo(fifo)
    result: list[BaseException] = []
    worker = threading.Thread(target=lambda: _record(result, lambda: resolve_inside(root, "pipe.mp4")), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "resolve_inside blocked on a FIFO"
    assert isinstance(result[0], PathError) and "FIFO" in str(result[0])
    assert regular_file_problem(fifo) == "is a FIFO (named pipe), not a regular file."
    assert regular_file_problem(root / "a.safetensors") is None
    assert regular_file_problem(root / "missing") == "no such file."
    assert regular_file_problem(root / "a.safetensors" / "x") == "no such file (a part of the path is not a folder)."


def _record(out: list[BaseException], fn) -> None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - handed to the test thread
        out.append(e)


def test_symlink_loops_are_a_clear_error(tree):
    root, _ = tree
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    with pytest.raises(PathError):
        resolve_inside(root, "loop1")
