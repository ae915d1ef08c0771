"""Where output goes: open_output never writes into a journal's files, whatever a link does meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

import toolkit.journal.location as location
from toolkit.errors import InvalidPathError
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names the open file through /proc/self/fd (Linux)")
def test_an_output_link_into_the_journal_pointed_elsewhere_only_during_its_check_is_not_written_through(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT, a symbolic link to journal.toml, pointed elsewhere only while the check ran: the file
    looked at before the check and the one opened after it were both journal.toml (the same file),
    and the output was written into it. The file opened is now checked itself."""
    journal.append("run-1", [{"event_type": "custom", "data": {"n": 1}}])
    toml = journal.path / "journal.toml"
    before = toml.read_bytes()
    out, elsewhere = tmp_path / "x.csv", tmp_path / "elsewhere.csv"
    elsewhere.write_text("")
    out.symlink_to(toml)
    check = location.refuse_journal_file

    def elsewhere_while_checked(path: str | Path) -> None:
        if Path(path) != out:
            return check(path)
        out.unlink()
        out.symlink_to(elsewhere)
        try:
            check(path)
        finally:
            out.unlink()
            out.symlink_to(toml)

    monkeypatch.setattr(location, "refuse_journal_file", elsewhere_while_checked)
    with pytest.raises(InvalidPathError, match=r"journal\.toml: is inside the journal") as e:
        with location.open_output(out) as f:
            f.write("x\n1\n")
    assert "Hint:" in str(e.value)
    assert toml.read_bytes() == before and elsewhere.read_text() == ""
    assert verify_journal(Journal.open(journal.path)).ok


def test_a_pipe_and_a_link_to_a_file_of_ones_own_are_still_written_in_place(tmp_path: Path) -> None:
    """What is written in place stays so: a named pipe (nothing to replace) and, through a
    symbolic link outside any journal, the file it leads to (the link stays a link)."""
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with location.open_output(fifo) as f:
        f.write("x\n1\n")
    reader.join(timeout=10)
    assert got == [b"x\n1\n"] and fifo.is_fifo()

    mine, link = tmp_path / "mine.csv", tmp_path / "link.csv"
    mine.write_text("old and longer\n")
    link.symlink_to(mine)
    with location.open_output(link) as f:
        f.write("new\n")
    assert mine.read_text() == "new\n" and link.is_symlink()


def test_a_link_to_a_file_not_there_yet_creates_it_and_one_into_a_journal_is_refused(
    journal: Journal, tmp_path: Path
) -> None:
    """OUT, a symbolic link to a file not written yet (latest.csv -> 2026-12-07.csv): open() made
    the file the link leads to, and open_output did too until it opened a path where nothing was
    with O_EXCL, which a link (even one leading nowhere) fails: every run was refused as if a file
    had 'appeared between the check and its opening'. The file the link leads to is now created,
    still exclusively (no link followed at its name); a link to a new file inside a journal stays
    refused, naming the journal."""
    target, link = tmp_path / "2026-12-07.csv", tmp_path / "latest.csv"
    link.symlink_to(target)
    with location.open_output(link) as f:
        f.write("x\n1\n")
    assert target.read_text() == "x\n1\n" and link.is_symlink()

    into = tmp_path / "into.csv"
    into.symlink_to(journal.path / "new.csv")
    with pytest.raises(InvalidPathError, match=r"into\.csv: is inside the journal ") as e:
        with location.open_output(into) as f:
            f.write("x\n")
    assert "Hint:" in str(e.value)
    assert not (journal.path / "new.csv").exists()


def test_an_output_removed_between_its_check_and_its_opening_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file was there when looked at, so it was opened without O_CREAT: removed meanwhile, the
    FileNotFoundError came out as a traceback. It is now the error naming the path, with a Hint."""
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    check = location.refuse_journal_file

    def removed_while_checked(path: str | Path) -> None:
        check(path)
        out.unlink(missing_ok=True)

    monkeypatch.setattr(location, "refuse_journal_file", removed_while_checked)
    with pytest.raises(InvalidPathError, match=r"out\.csv: a file was removed there between the check") as e:
        with location.open_output(out) as f:
            f.write("new\n")
    assert "Hint:" in str(e.value) and not out.exists()
