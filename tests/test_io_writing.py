"""Writing into folders users name: atomic files, staging, leftovers, locks, checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmbdet.errors import InputError
from cmbdet.io.writing import (
    HOST_TAG,
    LOCK_NAME,
    check_not_inputs,
    check_writable,
    folder_lock,
    leftovers_of,
    publish,
    real_output_path,
    refuse_links,
    staging_folder,
    write_atomic,
)

UNWRITABLE = "/proc/cmbdet-test-out"  # a place no process may create a folder in


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_write_atomic_replaces_a_planted_link_and_leaves_its_target_alone(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("thesis")
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.csv").symlink_to(victim)
    write_atomic(out / "batch.csv", "subject,status\n")
    assert victim.read_text() == "thesis"
    assert not (out / "batch.csv").is_symlink()
    assert (out / "batch.csv").read_text() == "subject,status\n"
    assert sorted(p.name for p in out.iterdir()) == ["batch.csv"]  # no temporary left


def test_write_atomic_gives_the_usual_file_mode(tmp_path):
    path = write_atomic(tmp_path / "a.json", b"{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_staging_names_are_private_and_carry_their_owner(tmp_path):
    final = tmp_path / "out"
    first, second = staging_folder(final), staging_folder(final)
    assert first != second
    assert first.name.startswith(f".out.partial-{HOST_TAG}-{os.getpid()}-")
    assert first.stat().st_mode & 0o777 == 0o700  # nobody else can plant links inside
    (first / "a.txt").write_text("new")
    publish(first, final)
    assert (final / "a.txt").read_text() == "new"
    assert final.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_publish_into_an_existing_folder_replaces_its_files_one_by_one(tmp_path):
    final = tmp_path / "out"  # e.g. a mount point: only its contents can be replaced
    final.mkdir()
    for name in ("run.json", "a.csv", "keep.txt"):
        (final / name).write_text("old")
    staging = staging_folder(final)
    assert staging.parent == final
    (staging / "a.csv").write_text("new")
    (staging / "run.json").write_text("new")
    publish(staging, final, last="run.json")
    contents = {p.name: p.read_text() for p in final.iterdir()}
    assert contents == {"a.csv": "new", "run.json": "new", "keep.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_interrupted_publish_leaves_a_folder_that_reads_as_incomplete(tmp_path, monkeypatch):
    final = tmp_path / "out"
    final.mkdir()
    (final / "run.json").write_text("old")
    staging = staging_folder(final)
    for name in ("a.csv", "b.csv", "run.json"):
        (staging / name).write_text("new")
    replace = os.replace

    def interrupted(source, target):
        if Path(target).name == "b.csv":
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish(staging, final, last="run.json")
    assert not (final / "run.json").exists()  # the old record is gone before any new file


def test_publish_refuses_a_link_at_the_final_name(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("x")
    staging = staging_folder(tmp_path / "out")
    (tmp_path / "out").symlink_to(victim)  # planted while the run writes
    with pytest.raises(InputError, match="symbolic link"):
        publish(staging, tmp_path / "out")
    with pytest.raises(InputError, match="symbolic link"):
        staging_folder(tmp_path / "out")
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.txt"]


def test_leftovers_are_those_of_dead_runs_of_this_host(tmp_path):
    final = tmp_path / "out"
    dead = tmp_path / f".out.partial-{HOST_TAG}-{_dead_pid()}-abc123"
    live = tmp_path / f".out.partial-{HOST_TAG}-{os.getpid()}-abc123"
    other_tag = "00000000" if HOST_TAG != "00000000" else "11111111"
    other_host = tmp_path / f".out.replaced-{other_tag}-{os.getpid()}-abc123"
    legacy = tmp_path / ".out.partial-0123456789ab"  # cmbdet before 0.2
    other_output = tmp_path / f".other.partial-{HOST_TAG}-{_dead_pid()}-abc123"
    for folder in (dead, live, other_host, legacy, other_output):
        folder.mkdir()
    link = tmp_path / f".out.partial-{HOST_TAG}-{_dead_pid()}-link"
    link.symlink_to(tmp_path / "victim", target_is_directory=True)
    assert sorted(leftovers_of(final)) == sorted([dead, legacy])


def test_check_writable_names_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "deeper")  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    with pytest.raises(InputError, match="cannot be written") as caught:
        check_writable(UNWRITABLE)
    assert str(caught.value).startswith(UNWRITABLE)


def test_check_not_inputs_refuses_folders_holding_inputs_and_the_working_folder(
    tmp_path, monkeypatch
):
    data = tmp_path / "data" / "sub-1"
    data.mkdir(parents=True)
    swi = data / "swi.nii.gz"
    swi.write_bytes(b"x")
    for out in (data, tmp_path / "data", tmp_path):
        with pytest.raises(InputError, match="holds the input"):
            check_not_inputs(out, [swi], replaced=True)
    check_not_inputs(tmp_path / "results", [swi], replaced=True)
    monkeypatch.chdir(data)
    with pytest.raises(InputError, match="current folder"):
        check_not_inputs(tmp_path / "data" / "sub-1", [], replaced=True)
    check_not_inputs(data, [], replaced=False)  # a batch writes inside, never replaces it


def test_real_output_path_follows_only_a_link_given_as_out(tmp_path, monkeypatch):
    target = tmp_path / "scratch"
    target.mkdir()
    (tmp_path / "results").symlink_to(target)
    assert real_output_path(tmp_path / "results") == target
    monkeypatch.chdir(tmp_path)
    assert real_output_path(".") == tmp_path.resolve()
    assert real_output_path("new") == tmp_path.resolve() / "new"


def test_a_held_lock_is_refused_with_its_holder(tmp_path):
    with folder_lock(tmp_path) as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(InputError) as caught:
            with folder_lock(tmp_path):
                pass
        message = str(caught.value)
        assert f"process {os.getpid()}" in message and str(path) in message
    assert not path.exists()  # released and removed


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "h", "pid": _dead_pid()}))
    with folder_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_link_at_the_lock_name_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(victim)
    with pytest.raises(InputError, match="link"):
        with folder_lock(folder):
            pass
    assert victim.read_text() == "x"


def test_a_hard_link_at_the_lock_name_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    folder = tmp_path / "out"
    folder.mkdir()
    os.link(victim, folder / LOCK_NAME)
    with pytest.raises(InputError, match="hard link"):
        with folder_lock(folder):
            pass
    assert victim.read_text() == "keep"


def test_refuse_links_finds_a_link_anywhere_in_the_tree(tmp_path):
    (tmp_path / "fold-1" / "model").mkdir(parents=True)
    refuse_links(tmp_path)  # no link: fine
    (tmp_path / "fold-1" / "model" / "checkpoint-stage1").symlink_to(tmp_path.parent)
    with pytest.raises(InputError, match="symbolic link") as caught:
        refuse_links(tmp_path)
    assert caught.value.path == tmp_path / "fold-1" / "model" / "checkpoint-stage1"
