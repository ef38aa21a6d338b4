"""The landing zone: which files are drops, which wait, which are set aside."""

import json
import os
import threading
import time

from recsys_assets.resources.landing import LandingZone


def test_a_file_still_being_written_waits_for_the_next_run(tmp_path):
    folder = tmp_path / "sales_orders"
    folder.mkdir()
    old, growing, fresh = folder / "old.csv", folder / "growing.csv", folder / "fresh.csv"
    for path in (old, growing, fresh):
        path.write_text("a,b\n1,2\n")
    os.utime(old, (time.time() - 60, time.time() - 60))
    done = threading.Event()

    def keep_writing() -> None:
        while not done.is_set():
            with growing.open("a") as f:
                f.write("3,4\n")
            time.sleep(0.1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    landing = LandingZone(root=str(tmp_path), settle_seconds=1.0)
    try:
        start = time.monotonic()
        ready, changing = landing.settled(landing.files("sales_orders"))
        waited = time.monotonic() - start
    finally:
        done.set()
        writer.join()

    assert list(ready) == [fresh.resolve(), old.resolve()]  # fresh: unchanged once a second old
    assert list(changing) == ["growing.csv"]
    assert waited >= 0.5  # it waited for fresh.csv to settle rather than skip it


def test_names_that_are_not_drops_are_skipped_with_a_reason(tmp_path):
    folder = tmp_path / "customers"
    folder.mkdir()
    for name in ("a.csv", "B.CSV", "c.csv.part", "notes.txt", "d:1.csv", ".hidden.csv"):
        (folder / name).write_text("x\n")
    (folder / "_rejected").mkdir()

    files, skipped = LandingZone(root=str(tmp_path)).scan("customers")

    assert [p.name for p in files] == ["B.CSV", "a.csv"]
    assert set(skipped) == {"c.csv.part", "notes.txt", "d:1.csv"}
    assert "rename" in skipped["d:1.csv"]


def test_a_file_set_aside_keeps_an_earlier_one_of_the_same_name(tmp_path):
    landing = LandingZone(root=str(tmp_path))
    folder = tmp_path / "sales_orders"
    folder.mkdir()
    targets = []
    for content in ("first", "second"):
        (folder / "x.csv").write_text(content)
        targets.append(landing.set_aside(folder / "x.csv", {"reason": content}))

    assert [t.read_text() for t in targets] == ["first", "second"]
    assert targets[0] != targets[1] and not (folder / "x.csv").exists()
    note = json.loads(targets[1].with_name(targets[1].name + ".why.json").read_text())
    assert note["reason"] == "second" and note["file"] == str(folder / "x.csv")
